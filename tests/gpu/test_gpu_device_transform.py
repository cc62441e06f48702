"""DeviceTransform on CUDA: the CPU's floats, from the batch's own draws, in channels_last_3d,
without making the host wait for the GPU.

The clips are real rendered motion frames (``resnet3d.synthetic.render_video``); the draws come
from ``draw_augmentation`` with each item's own generator, as the training dataset makes them.
Every operation is float32 on both devices and TF32 is kept off, so the only differences are
the order of the per-frame mean's sums and of the 3x3 colour products: a few float32 ulps of
values up to 255 (one ulp there is 1.5e-5), so at most 2e-3 in 0..255 units (the seed's input)
and 1e-4 once normalised (divided by 255 x std, std about 0.22).
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from gpu_helpers import CUDA, full_float32, record, requires_cuda

from resnet3d.data.device import DeviceTransform, draw_augmentation, jitter_factors
from resnet3d.normalization import KINETICS, SEED
from resnet3d.synthetic import render_video

pytestmark = requires_cuda

STRENGTH = (0.4, 0.4, 0.4, 0.1)
ATOL = 1e-4  # normalised units; see the module's docstring
ATOL_0_255 = 2e-3  # the seed's 0..255 units


@pytest.fixture(autouse=True)
def no_tf32():
    with full_float32():
        yield


def _clips(n: int = 8, t: int = 4, size=(20, 24), channels: int = 3, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    frames = np.stack([render_video(i % 4, t, size, rng) for i in range(n)])  # (N, T, H, W, 3)
    return torch.from_numpy(frames[..., :channels].copy())


def _draws(n: int, seed: int = 0):
    draws = [draw_augmentation(random.Random(seed * 1000 + i), STRENGTH) for i in range(n)]
    flip = torch.tensor([f for f, _ in draws])
    jitter = torch.stack([j for _, j in draws])
    assert 0 < int(flip.sum()) < n  # both branches of the flip are taken
    return flip, jitter


def _to_cuda(tensor: torch.Tensor) -> torch.Tensor:
    """As the loop does: pinned host memory, non_blocking copy."""
    return tensor.pin_memory().to(CUDA, non_blocking=True)


@pytest.mark.parametrize("norm", [KINETICS, SEED], ids=["kinetics", "seed"])
def test_training_transform_on_cuda_equals_cpu(norm):
    clips = _clips()
    flip, jitter = _draws(len(clips))
    transform = DeviceTransform(norm, train=True, hflip=True, colorjitter=True, jitter_strength=STRENGTH)
    want = transform(clips, flip=flip, jitter=jitter)
    got = transform(_to_cuda(clips), flip=_to_cuda(flip), jitter=_to_cuda(jitter))
    assert got.device.type == "cuda" and got.dtype == torch.float32 and got.shape == want.shape == (8, 3, 4, 20, 24)
    assert got.is_contiguous(memory_format=torch.channels_last_3d)
    difference = float((got.cpu() - want).abs().max())
    record("device_transform_train", norm=norm.to_dict(), max_abs_difference=difference)
    assert difference <= (ATOL_0_255 if norm is SEED else ATOL), difference
    # the draws did something: flipped and jittered clips differ from the plain evaluation input
    plain = DeviceTransform(norm, train=False)(clips)
    assert not torch.allclose(got.cpu(), plain, atol=1.0)


def test_evaluation_transform_and_bf16_output_on_cuda():
    clips = _clips(n=5, seed=1)
    for out_dtype in (torch.float32, torch.bfloat16):
        transform = DeviceTransform(KINETICS, train=False, out_dtype=out_dtype)
        want = transform(clips)
        got = transform(_to_cuda(clips))
        assert got.dtype == want.dtype == out_dtype
        assert got.is_contiguous(memory_format=torch.channels_last_3d)
        # bf16 output: float32 values that differ by ulps can round to neighbouring bf16 values
        tolerance = ATOL if out_dtype == torch.float32 else float(want.float().abs().max()) * 2.0 ** -7
        assert float((got.cpu().float() - want.float()).abs().max()) <= tolerance


def test_flow_flip_on_cuda_equals_cpu():
    clips = _clips(n=6, channels=2, seed=2)
    flip, _ = _draws(len(clips), seed=2)
    transform = DeviceTransform(KINETICS, train=True, hflip=True, flow=True)
    want = transform(clips, flip=flip)
    got = transform(_to_cuda(clips), flip=_to_cuda(flip))
    assert got.shape == (6, 2, 4, 20, 24) and got.is_contiguous(memory_format=torch.channels_last_3d)
    assert float((got.cpu() - want).abs().max()) <= ATOL


def test_draws_from_a_cuda_generator_are_reproducible():
    """Without the batch's draws the transform draws its own from a generator on the GPU: the flip
    first, then the four jitter numbers per clip (that order is what the CPU replays here)."""
    clips = _to_cuda(_clips(n=16, seed=3))
    transform = DeviceTransform(KINETICS, train=True, hflip=True, colorjitter=True, jitter_strength=STRENGTH)
    first = transform(clips, torch.Generator(device=CUDA).manual_seed(7))
    again = transform(clips, torch.Generator(device=CUDA).manual_seed(7))
    assert torch.equal(first, again)
    replay = torch.Generator(device=CUDA).manual_seed(7)
    flip = torch.rand(16, device=CUDA, generator=replay) < 0.5
    jitter = jitter_factors(torch.rand(16, 4, device=CUDA, generator=replay) * 2 - 1, STRENGTH)
    assert 0 < int(flip.sum()) < 16
    want = transform(clips.cpu(), flip=flip.cpu(), jitter=jitter.cpu())
    assert float((first.cpu() - want).abs().max()) <= ATOL


def test_transform_does_not_wait_for_the_gpu():
    """The training step is queued while the GPU still runs the previous one: a host sync in the
    transform (a tensor made from Python numbers, a data-dependent branch) would stall that."""
    clips = _to_cuda(_clips(n=8, seed=4))
    flip, jitter = (_to_cuda(t) for t in _draws(8, seed=4))
    transforms = [DeviceTransform(KINETICS, train=True, hflip=True, colorjitter=True, jitter_strength=STRENGTH),
                  DeviceTransform(KINETICS, train=True, hflip=True, colorjitter=True,
                                  jitter_strength=(0.4, 0.4, 0.4, 0)),
                  DeviceTransform(SEED, train=False, out_dtype=torch.bfloat16)]
    for transform in transforms:
        transform(clips, flip=flip, jitter=jitter)  # the first call makes its constants on the device
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for transform in transforms:
            transform(clips, flip=flip, jitter=jitter)
    finally:
        torch.cuda.set_sync_debug_mode("default")
