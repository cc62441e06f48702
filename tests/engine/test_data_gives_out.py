"""Data that gives out during a run (no readable video left: a folder or a drive gone) ends it
with one line, after keeping the training done so far, with two loader workers."""
import json

import numpy as np
import pytest
import torch

from resnet3d.data.loader import ClipSampler

from engine_helpers import TINY, resnet3d

pytestmark = pytest.mark.slow

N_TRAIN = 30
UNREADABLE = range(23)  # videos 0-22: an item stands in with items i-1, ..., i-20 (mod 30), so items 20-22 fail


def _write(root, n_train=N_TRAIN, unreadable=(), unreadable_validation=False):
    import simplejpeg

    database = {}
    rng = np.random.default_rng(0)
    keys = [f"t{i:02d}" for i in range(n_train)] + ["v0", "v1"]
    for number, key in enumerate(keys):
        validation = key.startswith("v")
        label = "ab"[number % 2]
        folder = root / "jpg" / label / key
        folder.mkdir(parents=True)
        for index in range(1, 5):
            frame = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            bad = (number in unreadable) if not validation else unreadable_validation
            data = b"\xff\xd8 not a JPEG" if bad else simplejpeg.encode_jpeg(frame)
            (folder / f"image_{index:05d}.jpg").write_bytes(data)
        database[key] = {"subset": "validation" if validation else "training", "annotations": {"label": label}}
    (root / "ann.json").write_text(json.dumps({"labels": ["a", "b"], "database": database}))


def _flags(root, seed):
    return ["--root_path", str(root), "--video_path", "jpg", "--annotation_path", "ann.json", "--dataset", "kinetics",
            "--result_path", "results", *TINY, "--n_threads", "2", "--batch_size", "2", "--no_cuda",
            "--manual_seed", str(seed), "--n_epochs", "2"]


def _steps_before_failing(seed: int, batch_size: int = 2) -> int:
    """Full batches of epoch 1 before the first with an item that finds no readable stand-in."""
    sampler = ClipSampler(N_TRAIN, shuffle=True, seed=seed)
    sampler.set_epoch(1)
    order = [index for index, _ in sampler]
    return min(order.index(item) for item in (20, 21, 22)) // batch_size


def test_training_data_that_gives_out_mid_epoch_keeps_the_steps_taken(tmp_path):
    """The UserError ('21 videos in a row had no readable frame') came out of the epoch and the
    steps it had taken were lost; now they are kept as an interrupted epoch, as for a dead worker."""
    seed, steps_done = next((seed, steps) for seed in range(100) if (steps := _steps_before_failing(seed)) >= 2)
    _write(tmp_path, unreadable=UNREADABLE)
    done = resnet3d("main", *_flags(tmp_path, seed), check=False)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    interrupted = tmp_path / "results" / "model_interrupted.pth"
    assert last.startswith("resnet3d main: error: 21 videos in a row had no readable frame (the last: "), last
    assert last.endswith(f"; stopped at epoch 1, step {steps_done} of {N_TRAIN // 2}: saved {interrupted}. Once "
                         "that is fixed, continue with --resume auto"), last
    assert "Traceback" not in done.stderr
    state = torch.load(interrupted, weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) == (0, steps_done)


def test_validation_data_that_gives_out_keeps_the_epoch(tmp_path):
    """Every validation video unreadable: the error came after the epoch's training and before
    its checkpoint, and the epoch was lost."""
    _write(tmp_path, n_train=4, unreadable_validation=True)
    done = resnet3d("main", *_flags(tmp_path, 0), check=False)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    saved = tmp_path / "results" / "model_1.pth"
    assert last.startswith("resnet3d main: error: none of the 2 validation videos has a readable frame"), last
    assert last.endswith(f"; in the validation after epoch 1: its training is saved in {saved}. Fix the validation "
                         "data (or leave validation out with --no_val), then continue with --resume auto"), last
    assert torch.load(saved, weights_only=True)["epoch"] == 1
    again = resnet3d("main", *_flags(tmp_path, 0), "--resume_path", "results/model_1.pth", "--no_val")
    assert "epoch 2/2" in again.stdout
