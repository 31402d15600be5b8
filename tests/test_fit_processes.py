"""A batch's people fitted in several processes (fitting/processes.py): the same results as one batch."""

import dataclasses
import time
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


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_an_idle_meter_counts_this_process_and_the_helpers_it_waited_for_as_idle():
    """A meter started before this process's own work (the model's loading) and before a helper ended and was
    waited for (the detection process) counts both as idle, and reads at once when its window is long enough;
    someone else's program over a window of the same length is not idle."""
    import subprocess
    import sys

    from bodycapture.cpus import IdleMeter, idle_cores

    if idle_cores(0.05) is None:
        pytest.skip("no /proc/stat here")
    helper = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # started and spinning
        meter = IdleMeter([helper.pid])
        _spin(0.4)  # this process busy, beside the helper
        helper.kill()
        helper.wait()  # ended and waited for inside the window: its ticks come from the children's usage
        _spin(0.2)
        start = time.perf_counter()
        counted = meter.read(0.1)
        waited = time.perf_counter() - start
    finally:
        helper.kill()
        helper.wait()
    other = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # not ours
    try:
        time.sleep(0.2)
        meter = IdleMeter()
        _spin(0.6)
        without = meter.read(0.1)
    finally:
        other.kill()
        other.wait()
    assert waited < 0.05  # the window was long enough already
    assert counted - without > 0.5, (without, counted)


def test_batches_idle_cores_measured_from_the_runs_start_then_each_batchs_end(monkeypatch, tmp_path):
    """Batches are fitted while the detection process waits (a photo ahead): its CPU time counts as idle for
    them (for the last batch until it ended). The first batch's idle cores are measured from before the model
    is loaded, so that its fit need not wait for a sample; the next batch's from the end of the one before."""
    import bodycapture.pipeline as pipeline

    calls, loaded = [], []
    monkeypatch.setattr(pipeline, "fit_processes",
                        lambda options, people, idle=None, meter=None: calls.append((meter.ours, meter.started)) or 1)

    def fit_and_write(batch, *args):
        calls.append(len(batch))
        loaded.append(time.monotonic())

    model_and_config = pipeline._model_and_config
    monkeypatch.setattr(pipeline, "_model_and_config",
                        lambda *a, **k: loaded.append(time.monotonic()) or model_and_config(*a, **k))
    monkeypatch.setattr(pipeline, "_fit_and_write", fit_and_write)
    images = Path(__file__).resolve().parent / "data" / "images"
    photos = [images / f"{name}.jpg" for name in ("coco_569", "coco_623", "coco_294")]
    report = pipeline.capture(photos, out=tmp_path / "out", batch_images=2, progress=False)
    # when the detection process had the first photo's people, and when this one read them (after the model)
    assert 0 < report.timings["keypoints_ready"] <= report.timings["first_keypoints"] + 0.05, report.timings
    assert len(calls) == 4 and calls[1] == 2 and calls[3] == 1  # a batch of two photos, then the last one
    (ours, first_start), (last_ours, last_start) = calls[0], calls[2]
    assert len(ours) == 1 and ours[0] > 0 and last_ours == ours  # the detection process's id
    assert first_start < loaded[0]  # measured from before the model's loading
    assert loaded[1] <= last_start  # then from the first batch's end
