"""A batch's people fitted in several processes at once, merged into one FitResult as if fitted together.

A person's fit does not depend on its batch mates (float32, one torch thread: models/lbs.py `rows_matmul` and
`atan2`; tests/test_fitting.py), so a batch split between processes gives every person the same result, bit
for bit, only sooner where cores would otherwise idle (8 people on 2 cores: 7.3 s instead of 10.0 s), and
a photo of two people on 2 cores fits in about the time of its slower person instead of both together
(docs/benchmarks.md, The first result). The other processes are forked from this one once the model is loaded (no
second import of torch; the model is shared copy-on-write), so this runs on Linux only, and on the CPU.
Each child fits its share with the same model and config and sends its FitResult back through a pipe; a
child that fails or dies has its share fitted in this process instead (a warning says so).
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import sys
import time

import numpy as np
import torch

from .fitter import FitResult, StageReport, fit
from .quality import FitQuality

__all__ = ["can_fork", "deal_people", "concat_results", "fit_in_processes"]

log = logging.getLogger(__name__)


def can_fork() -> bool:
    """Whether this platform forks safely after torch is loaded (Linux; macOS's system libraries do not)."""
    return sys.platform.startswith("linux")


def deal_people(counts: list[int], parts: int) -> list[list[tuple[int, list[int]]]]:
    """The people of images with `counts` people each, dealt in turn to `parts` shares (people are ordered by
    size, so each share gets large and small ones): per share [(image, [its people in that image])]; shares
    left empty are dropped."""
    shares: list[dict[int, list[int]]] = [{} for _ in range(parts)]
    k = 0
    for image, count in enumerate(counts):
        for person in range(count):
            shares[k % parts].setdefault(image, []).append(person)
            k += 1
    return [list(share.items()) for share in shares if share]


def _cat(values: list, order: np.ndarray):
    """Per-person values of the shares, concatenated and put in the batch's order (None stays None)."""
    if any(v is None for v in values):
        return None
    if isinstance(values[0], torch.Tensor):
        return torch.cat(values)[torch.as_tensor(order)]
    if isinstance(values[0], dict):
        return {k: _cat([v[k] for v in values], order) for k in values[0]}
    flat = [x for v in values for x in v]
    return [flat[i] for i in order]


def _same_terms(terms: list[dict], counts: list[int]) -> list[dict]:
    """The shares' stage terms with the same names: a term that a share did not compute (the 3D-landmark term
    where none of its people has landmarks) is zero for its people, as it is in a batch computing it."""
    names = list(dict.fromkeys(name for t in terms for name in t))
    like = next(iter(terms[0].values()))
    return [{name: t.get(name, like.new_zeros(n)) for name in names} for t, n in zip(terms, counts)]


def concat_results(parts: list[FitResult], people: list[np.ndarray], image_index: list[np.ndarray],
                   seconds: float) -> FitResult:
    """One FitResult from the shares' results. people[k]: (P_k,) each share's people's positions in the
    batch; image_index[k]: (P_k,) their images in the batch. Batch-wide figures of a stage (evaluations,
    items, collision seconds) are summed over the shares, its seconds are the slowest share's."""
    order = np.argsort(np.concatenate(people), kind="stable")

    def per_person(name: str):
        return _cat([getattr(r, name) for r in parts], order)

    stages = []
    for reports in zip(*(r.stages for r in parts)):
        stages.append(StageReport(
            reports[0].name, _cat(_same_terms([s.terms for s in reports], [len(s.iterations) for s in reports]), order),
            _cat([s.iterations for s in reports], order),
            sum(s.evaluations for s in reports), max(s.seconds for s in reports), sum(s.items for s in reports),
            _cat([s.collisions for s in reports], order), sum(s.collision_seconds for s in reports)))
    quality = None
    if all(r.quality is not None for r in parts):
        q = [r.quality for r in parts]
        quality = FitQuality(_cat([x.residual for x in q], order), _cat([x.pose_prior for x in q], order),
                             _cat([x.collisions for x in q], order), _cat([x.rolled_back for x in q], order),
                             q[0].check_prior)
    fields = {f.name: per_person(f.name) for f in dataclasses.fields(FitResult)
              if f.name not in ("stages", "quality", "seconds", "faces", "image_index")}
    return FitResult(**fields, image_index=torch.as_tensor(np.concatenate(image_index)[order]), stages=stages,
                     quality=quality, seconds=seconds, faces=parts[0].faces)


def _child(send, keypoints, model, config, focal) -> None:
    """A forked process's share: its FitResult (or the error) pickled into the pipe."""
    try:
        result = fit(keypoints, model, config, focal_length=focal)
        send.send_bytes(pickle.dumps(("ok", result)))
    except BaseException as err:  # noqa: BLE001 - whatever went wrong goes back to the parent
        send.send_bytes(pickle.dumps(("error", f"{type(err).__name__}: {err}")))
    finally:
        send.close()


def fit_in_processes(keypoints: list, model, config, focal: np.ndarray, processes: int,
                     progress=None) -> FitResult:
    """fit(keypoints, model, config, focal_length=focal) with the people dealt to `processes` processes (this
    one and processes - 1 forked children; deal_people), merged in the batch's order. keypoints: a list of
    ImageKeypoints; focal: (P,) per person, in the batch's order. progress: as fit's, for this process's
    share. The model must be on the CPU."""
    import multiprocessing

    start = time.perf_counter()
    counts = [kp.num_people for kp in keypoints]
    first = np.cumsum([0] + counts)[:-1]  # each image's first person in the batch
    shares = deal_people(counts, processes)
    jobs = []
    for share in shares:
        positions = np.concatenate([first[image] + np.array(people) for image, people in share])
        images = np.concatenate([np.full(len(people), image) for image, people in share])
        jobs.append(([keypoints[image].take(people) for image, people in share], positions, images))
    if len(jobs) == 1:
        return fit(keypoints, model, config, focal_length=focal, progress=progress)
    context = multiprocessing.get_context("fork")
    children = []
    for share_keypoints, positions, _ in jobs[1:]:
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_child, args=(send, share_keypoints, model, config, focal[positions]),
                                daemon=True)
        child.start()
        send.close()
        children.append((child, receive))
    try:
        share_keypoints, positions, _ = jobs[0]
        results = [fit(share_keypoints, model, config, focal_length=focal[positions], progress=progress)]
        for (child, receive), (share_keypoints, positions, _) in zip(children, jobs[1:]):
            try:
                status, value = pickle.loads(receive.recv_bytes())
            except EOFError:
                child.join()
                status, value = "error", f"it ended unexpectedly (exit code {child.exitcode})"
            if status != "ok":  # its share fitted here instead: the same result, later
                log.warning("a fitting process failed (%s); fitting its %d people in this one", value,
                            sum(kp.num_people for kp in share_keypoints))
                value = fit(share_keypoints, model, config, focal_length=focal[positions])
            results.append(value)
    finally:
        for child, receive in children:
            receive.close()
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join()
    return concat_results(results, [j[1] for j in jobs], [j[2] for j in jobs], time.perf_counter() - start)
