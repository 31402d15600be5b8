"""Interpenetration term speed: search + penalty + backward on posed open-model bodies.

    python benchmarks/bench_collision.py [--device cuda] [--repeats 10]

Contact-rich poses (arms pressed into the torso, crossed legs, crouching, a hand pressed on the chest); B = 1 and
B = 8; then how the time grows with the triangle count (the same bodies decimated by vertex clustering,
and subdivided 1 -> 4). The figures in docs/benchmarks.md come from this script.
"""

from __future__ import annotations

import argparse
import time

import torch

from bodycapture.collision import CollisionTerm, PartFilter, conic_penalty
from bodycapture.models.remesh import decimate, subdivide
from bodycapture.models.zoo import load_model

CONTACT_POSES = {
    "arm into torso": {"left_shoulder": [0, 0, -1.7], "right_shoulder": [0, 0, 1.7]},
    "arms crossed": {"left_shoulder": [0, 1.1, -1.0], "right_shoulder": [0, -1.1, 1.0],
                     "left_elbow": [0, 1.9, 0], "right_elbow": [0, -1.9, 0]},
    "crouching": {"left_hip": [-2.2, 0, 0.1], "right_hip": [-2.2, 0, -0.1], "left_knee": [2.4, 0, 0],
                  "right_knee": [2.4, 0, 0], "left_shoulder": [0, 0, -1.3], "right_shoulder": [0, 0, 1.3]},
    "legs crossed": {"left_hip": [-0.2, 0, -0.35], "right_hip": [-0.2, 0, 0.35],
                     "left_shoulder": [0, 0, -1.3], "right_shoulder": [0, 0, 1.3]},
    "hand on chest": {"right_shoulder": [0, 0.9, 0.6], "right_elbow": [0, 2.6, 0],
                      "left_shoulder": [0, 0, -1.3]},
}  # fmt: skip


def posed_bodies(model, batch: int, poses: list[str] | None = None) -> torch.Tensor:
    """(batch, V, 3): the named contact poses (default: all of them) in turn."""
    names = model.joint_names
    chosen = [CONTACT_POSES[p] for p in (poses or list(CONTACT_POSES))]
    body = torch.zeros(batch, 21, 3)
    for i in range(batch):
        for joint, aa in chosen[i % len(chosen)].items():
            body[i, names.index(joint) - 1] = torch.tensor(aa)
    poses = body
    with torch.no_grad():
        return model(body_pose=poses.reshape(batch, -1).to(model.v_template)).vertices


def time_term(term: CollisionTerm, vertices: torch.Tensor, repeats: int) -> tuple[float, float, int]:
    """(ms per call for search + penalty + backward, of which search, colliding pairs per body)."""
    search_s = total_s = 0.0
    pairs = 0
    for r in range(repeats + 1):
        v = vertices.clone().requires_grad_(True)
        if v.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        found = term.search(v)
        if v.is_cuda:
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        conic_penalty(v, term.faces, found, term.settings).sum().backward()
        if v.is_cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if r:  # the first call warms up
            search_s += t1 - t0
            total_s += t2 - t0
        pairs = len(found)
    return 1000 * total_s / repeats, 1000 * search_s / repeats, pairs / vertices.shape[0]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    dev = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {dev}")
    model = load_model(device=dev)
    term = CollisionTerm.for_model(model)
    print(f"open model: {model.faces_tensor.shape[0]} triangles")
    print(f"{'poses':<16} {'B':>3} {'pairs/body':>10} {'search ms/body':>15} {'total ms/body':>14}")
    for name, batch in [(p, 1) for p in CONTACT_POSES] + [("all (mixed)", 8)]:
        v = posed_bodies(model, batch, None if batch > 1 else [name])
        total, search, pairs = time_term(term, v, args.repeats)
        print(f"{name:<16} {batch:>3} {pairs:>10.0f} {search / batch:>15.1f} {total / batch:>14.1f}")

    print("\nscaling with the triangle count (mixed contact poses, B = 8)")
    print(f"{'mesh':<22} {'triangles':>9} {'pairs/body':>10} {'total ms/body':>14}")
    v = posed_bodies(model, 8).cpu()
    faces, parts = model.faces_tensor.cpu(), term.part_filter.face_part.cpu()
    meshes = [(f"decimated {c * 100:.0f} cm", *decimate(v, faces, parts, c)) for c in (0.04, 0.02, 0.01)]
    meshes.append(("original", v, faces, parts))
    meshes.append(("subdivided x4", *subdivide(v, faces, parts)))
    for label, verts, f, p in meshes:
        t = CollisionTerm(f.to(dev), PartFilter(p.to(dev), term.part_filter.allowed), term.settings)
        total, _, pairs = time_term(t, verts.to(dev), max(2, args.repeats // 2))
        print(f"{label:<22} {f.shape[0]:>9} {pairs:>10.0f} {total / 8:>14.1f}")


if __name__ == "__main__":
    main()
