"""A batch's people fitted in several processes (fitting/processes.py): the same results as one batch."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import bodycapture
from bodycapture.fitting import FitConfig, fit
from bodycapture.fitting.processes import can_fork, deal_people, fit_in_processes
from bodycapture.keypoints.types import ImageKeypoints
from bodycapture.pipeline import CaptureOptions, fit_processes

from test_fitting import FOCAL, H, W, make_scene


def test_people_are_dealt_in_turn_and_empty_shares_dropped():
    assert deal_people([2, 0, 3], 2) == [[(0, [0]), (2, [0, 2])], [(0, [1]), (2, [1])]]
    assert deal_people([1, 1], 3) == [[(0, [0])], [(1, [0])]]
    assert deal_people([3], 1) == [[(0, [0, 1, 2])]]


@pytest.mark.skipif(not can_fork(), reason="fitting processes are forked (Linux only)")
def test_people_fitted_in_two_processes_are_the_people_fitted_in_one_batch():
    """Bit for bit, person by person and in the batch's order (two photos, three people, dealt 0 and 2 to
    this process, 1 to a forked one), with each photo's people still marked as that photo's; the stages'
    batch-wide counts add up over the processes. The second photo has 3D landmarks, so the forked process's
    share has no 3D-landmark term, which is zero for its person in the batch."""
    model = bodycapture.load_model()
    _, _, kp3, _, keypoints = make_scene(model, seed=1)
    cfg = FitConfig()
    cfg.stages = cfg.stages[:3]  # a shorter schedule keeps the test quick; the mechanism is the same
    world = torch.cat([kp3[[5], :25], torch.ones(1, 25, 1)], -1).numpy()
    photos = [ImageKeypoints(keypoints.points[[0, 2]], (H, W)),
              ImageKeypoints(keypoints.points[[5]], (H, W), world=world)]
    focal = np.full(3, FOCAL)
    together = fit(photos, model, cfg, focal_length=focal)
    shared = fit_in_processes(photos, model, cfg, focal, processes=2)
    assert shared.image_index.tolist() == together.image_index.tolist() == [0, 0, 1]
    for name, value in together.params.items():
        assert torch.equal(shared.params[name], value), name
    for name in ("vertices", "joints", "keypoints_2d", "focal", "center", "image_size", "loss", "flipped",
                 "starts", "pose_latent"):
        assert torch.equal(getattr(shared, name), getattr(together, name)), name
    assert shared.start == together.start
    assert torch.equal(shared.quality.doubtful, together.quality.doubtful)
    for a, b in zip(shared.stages, together.stages):
        assert a.name == b.name and a.terms.keys() == b.terms.keys()
        for name in a.terms:
            assert torch.equal(a.terms[name], b.terms[name]), (a.name, name)
        assert torch.equal(a.iterations, b.iterations)
    assert "world" in together.stages[1].terms and together.stages[1].terms["world"][1] == 0
    assert shared.stages[0].items >= together.stages[0].items  # each process's starts, summed


def test_the_number_of_fitting_processes_follows_the_options_and_the_idle_cores(monkeypatch):
    import bodycapture.pipeline as pipeline
    from bodycapture.cpus import idle_cores, usable_cores

    free = idle_cores(0.05)
    assert free is None or 0.0 <= free <= usable_cores() + 1e-6
    monkeypatch.setattr(pipeline, "usable_cores", lambda: 4)
    torch.set_num_threads(1)
    options = CaptureOptions()
    fork = can_fork()
    assert fit_processes(options, people=3, idle=4.0) == (3 if fork else 1)  # at most one per person
    assert fit_processes(options, people=4, idle=3.7) == (3 if fork else 1)  # at most one per idle core
    assert fit_processes(options, people=4, idle=2.9) == (3 if fork else 1)  # 0.9 of a core counts as idle
    assert fit_processes(options, people=4, idle=1.1) == 1  # the others busy: no second process
    assert fit_processes(options, people=9, idle=4.0) == (4 if fork else 1)  # any batch size: the same results
    assert fit_processes(dataclasses.replace(options, processes=2), people=9, idle=4.0) == (2 if fork else 1)
    assert fit_processes(options, people=1, idle=4.0) == 1
    assert fit_processes(dataclasses.replace(options, threads=1), people=3, idle=4.0) == 1  # threads chosen
    assert fit_processes(dataclasses.replace(options, processes=2), people=3, idle=0.0) == (2 if fork else 1)
    assert fit_processes(dataclasses.replace(options, device="cuda"), people=3, idle=4.0) == 1


@pytest.mark.skipif(not can_fork(), reason="fitting processes are forked (Linux only)")
def test_a_fitting_process_that_dies_has_its_share_fitted_here(monkeypatch, caplog):
    import os

    import bodycapture.fitting.processes as processes
    from conftest import quick_config

    monkeypatch.setattr(processes, "_child", lambda *args: os._exit(3))  # the forked child dies at once
    model = bodycapture.load_model()
    _, _, _, _, keypoints = make_scene(model, seed=2)
    photo = [ImageKeypoints(keypoints.points[[1, 3]], (H, W))]
    focal = np.full(2, FOCAL)
    with caplog.at_level("WARNING", logger="bodycapture"):
        shared = fit_in_processes(photo, model, quick_config(), focal, processes=2)
    assert "exit code 3" in caplog.text
    together = fit(photo, model, quick_config(), focal_length=focal)
    assert torch.equal(shared.vertices, together.vertices)


def test_idle_cores_count_this_runs_own_helpers_as_idle():
    """A process kept busy by a helper of ours (the detection process) leaves its core to the fitting."""
    import subprocess
    import sys

    from bodycapture.cpus import idle_cores

    if idle_cores(0.05) is None:
        pytest.skip("no /proc/stat here")
    helper = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.2)  # started and spinning
        without = idle_cores(0.5)
        counted = idle_cores(0.5, ours=[helper.pid])
    finally:
        helper.kill()
        helper.wait()
    assert counted - without > 0.5, (without, counted)
    assert idle_cores(0.05, ours=[helper.pid]) is not None  # a helper that has ended counts nothing


def test_every_batch_may_be_split_the_detection_process_counted_idle_but_for_the_last(monkeypatch, tmp_path):
    """Batches before the last are fitted while the detection process waits (a photo ahead): its core is
    counted as idle for them; the last batch comes once it has ended."""
    import bodycapture.pipeline as pipeline

    calls = []
    monkeypatch.setattr(pipeline, "fit_processes", lambda options, people, idle=None, ours=(): calls.append(list(ours)) or 1)
    monkeypatch.setattr(pipeline, "_fit_and_write", lambda batch, *args: calls.append(len(batch)))
    images = Path(__file__).resolve().parent / "data" / "images"
    photos = [images / f"{name}.jpg" for name in ("coco_569", "coco_623", "coco_294")]
    pipeline.capture(photos, out=tmp_path / "out", batch_images=2, progress=False)
    assert len(calls) == 4 and calls[1] == 2 and calls[3] == 1  # a batch of two photos, then the last one
    assert len(calls[0]) == 1 and calls[0][0] > 0  # the detection process's id
    assert calls[2] == []  # the last batch: the detection process has ended
