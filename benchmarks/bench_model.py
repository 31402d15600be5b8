"""Speed of the body-model layer on an SMPL-X-sized model (random arrays of the official sizes).

    python benchmarks/bench_model.py [--device cpu|cuda] [--batch 1 16 128] [--dtype float32]

Reports the median time of forward, and of forward + backward (gradients for every parameter, as a
fit needs them), per batch size. 10,475 vertices, 20,908 faces, 55 joints, 486 pose correctives,
10 shape + 10 expression components, 12 hand PCA components (SMPLify-X's settings).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bodycapture.models import BodyModel, load_model, model_data_from_arrays
from bodycapture.models.random_model import random_model_arrays


def timed(fn, device: str, repeats: int) -> float:
    """Median wall time of fn() in milliseconds, after warm-up."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16, 128])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-correctives", action="store_true", help="skip the pose correctives")
    parser.add_argument("--open", action="store_true", help="time the bundled open model instead")
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    if args.open:
        model = load_model(num_betas=10, num_expression_coeffs=10, dtype=dtype, device=args.device)
    else:
        arrays = random_model_arrays("smplx", num_vertices=10475, num_faces=20908, num_shape=300, num_expression=100)
        data = model_data_from_arrays(arrays, family="smplx")
        model = BodyModel(data, num_betas=10, num_expression_coeffs=10, num_pca_comps=12, dtype=dtype,
                          device=args.device, use_pose_correctives=not args.no_correctives)
    print(model.description)
    threads = torch.get_num_threads()
    print(f"device={args.device} dtype={args.dtype} threads={threads} torch={torch.__version__}")
    print(f"{'B':>5} {'forward ms':>11} {'fwd+bwd ms':>11} {'fwd+bwd ms/item':>16}")
    for batch in args.batch:
        params = {
            name: (0.3 * torch.randn(batch, n, dtype=dtype, device=args.device)).requires_grad_()
            for name, n in model.parameter_sizes().items()
        }

        def forward():
            with torch.no_grad():
                return model(**params).vertices

        def forward_backward():
            out = model(**params)
            (out.vertices.square().sum() + out.joints.square().sum()).backward()

        f = timed(forward, args.device, args.repeats)
        fb = timed(forward_backward, args.device, args.repeats)
        print(f"{batch:>5} {f:>11.2f} {fb:>11.2f} {fb / batch:>16.3f}")


if __name__ == "__main__":
    main()
