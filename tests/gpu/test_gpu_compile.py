"""``resnet3d train --compile`` on CUDA: torch.compile (mode default) trains two steps of a tiny
model in bf16 with channels_last_3d, validates with the compiled model, and writes a checkpoint
of the plain model's weights.

In a fresh process (torch.compile's caches and settings are process-wide), with inductor's
cache in a folder of the test's own, which its generated kernels must fill: proof that the
compiled path ran rather than a silent fall-back to eager. Tens of seconds, most of them
compiling: deselect with ``-m "not compile"``.

And ``reduce-overhead`` (CUDA graphs) under the loop's step-late readout: each step's logged loss
is that step's own, as the same steps taken eagerly show.
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
    full_float32,
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


def test_reduce_overhead_steps_are_read_back_as_their_own():
    """CUDA graphs (``reduce-overhead``) overwrite a graph's outputs at its next replay, and the
    loop reads each step's loss and accuracy one step late, after the next step is queued. Every
    step's numbers must still be its own: the same steps taken eagerly log the same losses (full
    float32, no TF32: compiled and eager differ by rounding only), and the losses of consecutive
    steps differ by far more than that, so a read of the wrong step cannot pass. In this process:
    the compiled graphs are dropped at the end."""
    import torch

    from gpu_dist_workers import STRENGTH, global_batches
    from gpu_helpers import CUDA
    from resnet3d.config import OptimConfig
    from resnet3d.data.device import DeviceTransform
    from resnet3d.engine.compilation import compile_model, reset_compiler
    from resnet3d.engine.loop import StepParts, train_one_epoch
    from resnet3d.engine.optim import build_optimizer
    from resnet3d.engine.schedules import build_schedule
    from resnet3d.models import create_model
    from resnet3d.normalization import KINETICS

    # 6 steps of 8 clips: cudagraph trees warm up, record, then replay the rest
    batches = [{key: value.pin_memory() for key, value in batch.items()}
               for seed in range(3) for batch in global_batches(seed)]
    optim = OptimConfig(learning_rate=0.05, lr_scheduler="constant")

    def run(mode):
        from torch._dynamo.utils import counters

        torch.manual_seed(0)
        model = create_model("resnet", 10, widen_factor=0.25, n_classes=4).to(CUDA)
        model = model.to(memory_format=torch.channels_last_3d)
        stepped = compile_model(model, mode)
        parts = StepParts(model=stepped, eval_model=stepped, optimizer=build_optimizer(model.parameters(), optim),
                          scaler=None, device=CUDA, amp_dtype=None,
                          train_transform=DeviceTransform(KINETICS, train=True, hflip=True, colorjitter=True,
                                                          jitter_strength=STRENGTH),
                          eval_transform=DeviceTransform(KINETICS), channels_last=True)
        skips = counters["inductor"].get("cudagraph_skips", 0)
        rows = []
        result = train_one_epoch(parts, batches, 1, build_schedule(optim, 1), len(batches), on_batch=rows.append,
                                 show_progress=False)
        assert result.nonfinite is None and [row["batch"] for row in rows] == list(range(1, len(batches) + 1))
        return rows, counters["inductor"].get("cudagraph_skips", 0) - skips

    with full_float32():
        try:
            compiled, skipped = run("reduce-overhead")
        finally:
            reset_compiler()
        eager, _ = run("none")
    losses = [row["loss"] for row in compiled]
    want = [row["loss"] for row in eager]
    record("reduce_overhead_late_readout", losses=losses, eager_losses=want, cudagraph_skips=skipped)
    assert min(abs(a - b) for a, b in zip(want, want[1:])) > 1e-2, want  # the comparison can tell steps apart
    assert losses == pytest.approx(want, rel=1e-3, abs=1e-4)
    # an accuracy of 8 clips moves in steps of 1/8; rounding may flip one arg-max at most
    assert all(abs(a["acc"] - b["acc"]) <= 1 / 8 for a, b in zip(compiled, eager))
