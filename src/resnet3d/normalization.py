"""How a model expects its input values: the one description shared by training, testing,
classification and every checkpoint format.

A clip arrives as uint8 (0..255). The model sees ``(x / 255 * value_scale - mean) / std`` per
channel, with ``mean`` and ``std`` in the units of the scaled values. This covers both originals:

- the successor: value_scale 1, mean/std of the data set (Kinetics by default);
- the seed: value_scale 255, mean = the ActivityNet mean RGB, std 1 ("0-255 minus the mean").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Tuple

Triple = Tuple[float, float, float]


@dataclass(frozen=True)
class InputNorm:
    mean: Triple
    std: Triple
    value_scale: float = 1.0

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "value_scale": self.value_scale}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "InputNorm":
        return cls(
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            value_scale=float(data.get("value_scale", 1.0)),
        )

    def scale_and_shift(self) -> Tuple[Triple, Triple]:
        """Per-channel (a, b) with model_input = uint8 * a + b: one fused multiply-add on device."""
        a = tuple(self.value_scale / 255.0 / s for s in self.std)
        b = tuple(-m / s for m, s in zip(self.mean, self.std))
        return a, b  # type: ignore[return-value]


# The successor's per-data-set statistics (values in [0, 1]).
KINETICS = InputNorm(mean=(0.4345, 0.4051, 0.3775), std=(0.2768, 0.2713, 0.2737))
ACTIVITYNET = InputNorm(mean=(0.4477, 0.4209, 0.3906), std=(0.2767, 0.2695, 0.2714))
# The seed: 0-255 minus the ActivityNet mean RGB, no division.
SEED = InputNorm(mean=(114.7748, 107.7354, 99.4750), std=(1.0, 1.0, 1.0), value_scale=255.0)

NAMED = {"kinetics": KINETICS, "activitynet": ACTIVITYNET, "seed": SEED}

# The successor's 2018 release had other tables, in 0-255 units, divided by its --norm_value; its
# std was Kinetics' whatever --mean_dataset said. Its defaults (--norm_value 1, --mean_dataset
# activitynet, no --std_norm) are the seed's normalisation, SEED, to the digit.
MEAN_2018 = {"activitynet": (114.7748, 107.7354, 99.4750), "kinetics": (110.63666788, 103.16065604, 96.29023126)}
STD_2018 = (38.7568578, 37.88248729, 40.02898126)


def successor_norm(
    mean_dataset: str = "kinetics", value_scale: float = 1.0, mean_norm: bool = True, std_norm: bool = True
) -> InputNorm:
    """The successor's ``--mean_dataset/--value_scale/--no_mean_norm/--no_std_norm`` rule."""
    base = NAMED[mean_dataset]
    mean = tuple(m * value_scale for m in base.mean) if mean_norm else (0.0, 0.0, 0.0)
    std = tuple(s * value_scale for s in base.std) if std_norm else (1.0, 1.0, 1.0)
    return InputNorm(mean=mean, std=std, value_scale=value_scale)  # type: ignore[arg-type]


def successor_2018_norm(mean_dataset: str = "activitynet", norm_value: float = 1.0, mean_norm: bool = True,
                        std_norm: bool = False) -> InputNorm:
    """The 2018 successor's ``--mean_dataset/--norm_value/--no_mean_norm/--std_norm`` rule: inputs
    are uint8 / norm_value (0-255 for 1, 0-1 for 255), minus the table's mean / norm_value, divided
    by its std / norm_value only with ``--std_norm``."""
    mean = tuple(m / norm_value for m in MEAN_2018[mean_dataset]) if mean_norm else (0.0, 0.0, 0.0)
    std = tuple(s / norm_value for s in STD_2018) if std_norm else (1.0, 1.0, 1.0)
    return InputNorm(mean=mean, std=std, value_scale=255.0 / norm_value)  # type: ignore[arg-type]


def normalize_uint8(clips, norm: InputNorm, channel_dim: int = 1):
    """uint8 clips -> float32 model input, on whatever device ``clips`` lives.

    ``channel_dim`` says where the 3 colour channels are (1 for NCTHW, -1 for NTHWC).
    """
    import torch

    a, b = norm.scale_and_shift()
    shape = [1] * clips.dim()
    shape[channel_dim] = 3
    a_t = torch.tensor(a, dtype=torch.float32, device=clips.device).view(shape)
    b_t = torch.tensor(b, dtype=torch.float32, device=clips.device).view(shape)
    return torch.addcmul(b_t, clips.float(), a_t)
