import torch

from resnet3d.normalization import KINETICS, SEED, InputNorm, normalize_uint8, successor_norm


def test_seed_mode_is_0_255_minus_activitynet_mean():
    clip = torch.full((1, 3, 2, 2, 2), 200, dtype=torch.uint8)
    out = normalize_uint8(clip, SEED)
    assert torch.allclose(out[0, :, 0, 0, 0], torch.tensor([200 - 114.7748, 200 - 107.7354, 200 - 99.4750]))


def test_successor_mode_matches_to_tensor_then_normalize():
    clip = torch.randint(0, 256, (2, 4, 3, 3, 3), dtype=torch.uint8)  # N T H W C
    out = normalize_uint8(clip, KINETICS, channel_dim=-1)
    mean = torch.tensor(KINETICS.mean)
    std = torch.tensor(KINETICS.std)
    expected = (clip.float() / 255 - mean) / std
    assert torch.allclose(out, expected, atol=1e-5)


def test_value_scale_rule_and_round_trip():
    norm = successor_norm("kinetics", value_scale=255)
    clip = torch.randint(0, 256, (1, 3, 1, 2, 2), dtype=torch.uint8)
    assert torch.allclose(normalize_uint8(clip, norm), normalize_uint8(clip, KINETICS), atol=1e-4)
    assert InputNorm.from_dict(norm.to_dict()) == norm
