"""``resnet3d train --compile`` on CUDA: torch.compile (mode default) trains two steps of a tiny
model in bf16 with channels_last_3d, validates with the compiled model, and writes a checkpoint
of the plain model's weights.

In a fresh process (torch.compile's caches and settings are process-wide), with inductor's
cache in a folder of the test's own, which its generated kernels must fill: proof that the
compiled path ran rather than a silent fall-back to eager. Tens of seconds, most of them
compiling: deselect with ``-m "not compile"``.
"""
from __future__ import annotations

import json
import math

import pytest

from gpu_helpers import (
    TINY_CLIP,
    TINY_MODEL,
    data_flags,
    describe,
    read_checkpoint,
    record,
    requires_cuda,
    subprocess_env,
)

from resnet3d.engine.logs import read_log

pytestmark = [requires_cuda, pytest.mark.slow, pytest.mark.compile]


def test_compiled_training_steps_validation_and_checkpoint(gpu_motion, tmp_path):
    import subprocess
    import sys
    import time

    from resnet3d.checkpoints import build_model_from_checkpoint
    from resnet3d.models import create_model

    out = tmp_path / "compiled"
    cache = tmp_path / "inductor-cache"
    argv = ["train", *data_flags(gpu_motion), *TINY_MODEL, *TINY_CLIP, "--n-classes", "4", "--batch-size", "4",
            "--workers", "2", "--lr", "0.01", "--epochs", "1", "--max-steps-per-epoch", "2", "--no-curves",
            "--device", "cuda", "--compile", "--result-path", str(out)]
    env = dict(subprocess_env(), TORCHINDUCTOR_CACHE_DIR=str(cache))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "resnet3d", *argv], capture_output=True, text=True, timeout=540,
                          env=env)
    record("compile_default_two_steps", seconds=round(time.monotonic() - started, 1))
    assert done.returncode == 0, describe(done)

    opts = json.loads((out / "opts.json").read_text())
    assert opts["run"]["compile_mode"] == "default"
    assert opts["used"]["device"] == "cuda:0" and opts["used"]["precision"] == "bf16"
    train, val = read_log(out / "train.log"), read_log(out / "val.log")
    assert len(train) == 1 and len(val) == 1
    assert math.isfinite(float(train[0]["loss"])) and math.isfinite(float(val[0]["loss"]))
    assert len(read_log(out / "train_batch.log")) == 2
    generated = [p for p in cache.rglob("*.py") if p.is_file()]
    assert generated, f"inductor wrote no kernel into {cache}: the model was not compiled"

    saved = read_checkpoint(out / "model_1.pth")
    fresh = create_model("resnet", 10, widen_factor=0.25, n_classes=4).state_dict()
    assert sorted(saved["state_dict"]) == sorted(fresh)  # the plain model's names: no "_orig_mod." prefix
    model, _ = build_model_from_checkpoint(out / "model_1.pth")
    assert sorted(model.state_dict()) == sorted(fresh)
