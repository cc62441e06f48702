"""DeviceTransform: the originals' float pipeline, per-sample flip and jitter, memory format."""
from __future__ import annotations

import torch

from resnet3d.data import DataConfig, DeviceTransform
from resnet3d.data.device import color_jitter
from resnet3d.normalization import ACTIVITYNET, KINETICS, SEED, successor_norm


def _clips(n=3, t=4, h=6, w=7, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, t, h, w, c), dtype=torch.uint8, generator=g)


def _successor_reference(clips: torch.Tensor, norm) -> torch.Tensor:
    """The successor per frame: ToTensor (/255), ScaleValue, Normalize(mean, std), stack as CTHW."""
    out = []
    for clip in clips:
        frames = []
        for frame in clip:  # (H, W, C)
            x = frame.permute(2, 0, 1).float().div(255) * norm.value_scale
            for channel, m, s in zip(x, norm.mean, norm.std):
                channel.sub_(m).div_(s)
            frames.append(x)
        out.append(torch.stack(frames, 0).permute(1, 0, 2, 3))
    return torch.stack(out)


def test_evaluation_equals_the_successor_float_pipeline():
    clips = _clips()
    for norm in (KINETICS, ACTIVITYNET, SEED, successor_norm("kinetics", 255, mean_norm=True, std_norm=False)):
        out = DeviceTransform(norm, train=False)(clips)
        reference = _successor_reference(clips, norm)
        assert out.shape == (3, 3, 4, 6, 7) and out.dtype == torch.float32
        assert torch.allclose(out, reference, atol=1e-4, rtol=1e-5)
        assert out.is_contiguous(memory_format=torch.channels_last_3d)


def test_seed_mode_is_0_255_minus_mean():
    clips = torch.full((1, 2, 2, 2, 3), 200, dtype=torch.uint8)
    out = DeviceTransform(SEED)(clips)
    assert torch.allclose(out[0, :, 0, 0, 0], torch.tensor([200 - 114.7748, 200 - 107.7354, 200 - 99.4750]))


def test_flip_is_per_sample_and_mirrors_whole_clips():
    clips = _clips(n=32)
    transform = DeviceTransform(KINETICS, train=True, hflip=True)
    out = transform(clips, generator=torch.Generator().manual_seed(0))
    plain = DeviceTransform(KINETICS, train=False)(clips)
    flipped = plain.flip(-1)
    was_flipped = [bool(torch.allclose(o, f)) for o, f in zip(out, flipped)]
    kept = [bool(torch.allclose(o, p)) for o, p in zip(out, plain)]
    assert all(a != b for a, b in zip(was_flipped, kept))
    assert 6 <= sum(was_flipped) <= 26
    again = transform(clips, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert torch.equal(DeviceTransform(KINETICS, train=True, hflip=False)(clips), plain)


def test_flow_flip_mirrors_horizontal_motion():
    clips = torch.zeros((1, 1, 2, 3, 2), dtype=torch.uint8)
    clips[..., 0] = torch.tensor([10, 128, 250], dtype=torch.uint8)  # x-flow varies along W
    clips[..., 1] = 77
    transform = DeviceTransform(successor_norm("kinetics", 1, False, False), train=True, hflip=True, flow=True)
    generator = torch.Generator().manual_seed(0)
    while True:  # draw until this sample is flipped
        seed_state = generator.get_state()
        if torch.rand(1, generator=generator).item() < 0.5:
            break
    generator.set_state(seed_state)
    out = transform(clips, generator=generator)  # (1, 2, 1, 2, 3)
    assert out.shape == (1, 2, 1, 2, 3)
    assert torch.allclose(out[0, 0, 0, 0] * 255, torch.tensor([255 - 250, 255 - 128, 255 - 10], dtype=torch.float32))
    assert torch.allclose(out[0, 1] * 255, torch.tensor(77.0))


def test_jitter_definitions():
    x = torch.rand(2, 3, 2, 4, 4) * 255
    identity = torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 2)
    assert torch.allclose(color_jitter(x.clone(), identity), x, atol=1e-3)
    bright = torch.tensor([[0.5, 1.0, 1.0, 0.0]] * 2)
    assert torch.allclose(color_jitter(x.clone(), bright), x * 0.5, atol=1e-3)
    gray = torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 2)
    out = color_jitter(x.clone(), gray)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-3) and torch.allclose(out[:, 1], out[:, 2], atol=1e-3)
    flat = torch.tensor([[1.0, 0.0, 1.0, 0.0]] * 2)
    out = color_jitter(x.clone(), flat)  # contrast 0: every pixel of a frame becomes the frame's mean grey
    assert float(out.std(dim=(3, 4)).max()) < 1e-3
    grey_clip = torch.full((1, 3, 1, 2, 2), 100.0)
    assert torch.allclose(color_jitter(grey_clip, torch.tensor([[1.0, 1.0, 1.0, 0.25]])), grey_clip, atol=1e-3)  # hue leaves grey alone
    red = torch.zeros(1, 3, 1, 1, 1)
    red[0, 0] = 200.0
    turned = color_jitter(red.clone(), torch.tensor([[1.0, 1.0, 1.0, 1 / 3]]))
    assert int(turned[0].flatten().argmax()) == 1  # a third of a turn: red -> green


def test_training_jitter_changes_values_but_not_evaluation():
    clips = _clips(n=4)
    cfg = DataConfig(colorjitter=True)
    train = DeviceTransform.from_config(cfg, train=True)(clips, generator=torch.Generator().manual_seed(1))
    evaluation = DeviceTransform.from_config(cfg, train=False)(clips)
    assert not torch.allclose(train, evaluation)
    assert torch.allclose(evaluation, _successor_reference(clips, cfg.input_norm), atol=1e-4)


def test_bf16_output_and_bad_input():
    out = DeviceTransform(KINETICS, out_dtype=torch.bfloat16)(_clips())
    assert out.dtype == torch.bfloat16
    try:
        DeviceTransform(KINETICS)(torch.zeros(2, 3, 4, 4, 3))
    except ValueError as error:
        assert "uint8" in str(error)
    else:
        raise AssertionError("float input must be refused")


def test_the_batchs_own_draws_are_applied():
    """flip and jitter given with the batch (as training items carry them) decide alone."""
    from resnet3d.data.device import jitter_factors

    clips = _clips(n=4)
    flip = torch.tensor([True, False, False, True])
    factors = jitter_factors(torch.tensor([[0.5, -0.5, 1.0, -1.0]] * 4), (0.4, 0.4, 0.4, 0.1))
    assert torch.allclose(factors[0], torch.tensor([1.2, 0.8, 1.4, -0.1]))
    plain = DeviceTransform(KINETICS, train=False)(clips)
    flipped = DeviceTransform(KINETICS, train=True, hflip=True)(clips, flip=flip)
    for k in range(4):
        want = plain[k].flip(-1) if flip[k] else plain[k]
        assert torch.equal(flipped[k], want)
    both = DeviceTransform(KINETICS, train=True, hflip=True, colorjitter=True)(clips, flip=flip, jitter=factors)
    floats = clips.flip(3).permute(0, 4, 1, 2, 3).float()
    floats = torch.where(flip.view(-1, 1, 1, 1, 1), floats, clips.permute(0, 4, 1, 2, 3).float())
    a, b = KINETICS.scale_and_shift()
    want = color_jitter(floats, factors) * torch.tensor(a).view(1, 3, 1, 1, 1) + torch.tensor(b).view(1, 3, 1, 1, 1)
    assert torch.allclose(both, want, atol=1e-4)
    # a generator is not consulted when the batch brings its draws
    again = DeviceTransform(KINETICS, train=True, hflip=True, colorjitter=True)(
        clips, torch.Generator().manual_seed(9), flip=flip, jitter=factors)
    assert torch.equal(both, again)
