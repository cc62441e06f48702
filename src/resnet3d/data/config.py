"""Every option of the data pipeline, in one frozen dataclass.

The CLI (``resnet3d.compat`` for the originals' flags, ``resnet3d.config`` for ``train``) builds one
``DataConfig``; after that, data code reads only this object. Names follow the successor's flags
where one exists (``sample_t_stride``, ``train_crop_min_scale``); the seed's crop options map onto
``train_crop`` ("corner" for ``--crop c``, "multiscale_random" for ``--crop r``) plus
``initial_scale``/``n_scales``/``scale_step``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from numbers import Number
from typing import Any, Mapping, Tuple

from resnet3d.errors import UserError
from resnet3d.hardware import default_num_workers
from resnet3d.normalization import KINETICS, InputNorm

DATASETS = ("kinetics", "activitynet", "ucf101", "hmdb51", "mit", "folder")
FILE_TYPES = ("jpg", "hdf5", "video")
INPUT_TYPES = ("rgb", "flow")
# random: the successor's random-resized crop; corner: centre or a corner, multi-scale (seed `c`,
# successor `corner`); center: short-side resize + centre crop; multiscale_random: a multi-scale
# square at a random position (seed `r`).
TRAIN_CROPS = ("random", "corner", "center", "multiscale_random")
TRAIN_T_CROPS = ("random", "center")
DECODERS = ("auto", "simplejpeg", "pil")
# where training and validation JPEGs are decoded: "cpu" in the loader workers (decode.py), or
# "cuda": workers hand over the encoded bytes and the batch is decoded and cropped on the GPU
# (gpu_decode.py; docs/data.md, "Decoding on the GPU")
DECODE_DEVICES = ("cpu", "cuda", "mixed")
SUBSETS = ("training", "validation", "testing")
SUBSET_ALIASES = {"train": "training", "val": "validation", "test": "testing"}

# Strengths of --colorjitter: brightness, contrast, saturation (factor drawn from [1-s, 1+s]) and
# hue (shift drawn from [-h, h] of a full turn). The successor's flag builds ColorJitter() with all
# four at 0, which changes nothing; we apply a real jitter on purpose (docs/data.md).
DEFAULT_JITTER = (0.4, 0.4, 0.4, 0.1)
DEFAULT_DECODE_TOLERANCE = 0.9


def canonical_subset(subset: str) -> str:
    """'train'/'val'/'test' or the JSON's own names -> 'training'/'validation'/'testing'."""
    name = SUBSET_ALIASES.get(subset, subset)
    if name not in SUBSETS:
        raise UserError(f"unknown subset '{subset}': use one of {', '.join(SUBSETS)} (or train/val/test)")
    return name


def _named(field_name: str) -> str:
    """How a message names a data setting: its flag and its config-file key."""
    flag = "--decode-device" if field_name == "decode_device" else f"--{field_name}"
    return f"{flag} ([data] {field_name})"


@dataclass(frozen=True)
class DataConfig:
    """What to read, how to sample it, and how the model expects its values.

    Paths are final (``--root_path`` already joined). ``input_norm`` is applied on the device by
    ``DeviceTransform``; workers only ever produce uint8.
    """

    # what to read
    dataset: str = "kinetics"
    video_path: str = ""
    annotation_path: str = ""
    file_type: str = "jpg"
    input_type: str = "rgb"
    # "folder" data sets: how a video's path is formed from the video path, label and key
    # (python format fields {label} and {key}); the default is the Kinetics layout.
    folder_layout: str = "{label}/{key}"
    # sampling
    sample_size: int = 112
    sample_duration: int = 16
    sample_t_stride: int = 1
    train_t_crop: str = "random"
    n_val_samples: int = 3
    # spatial augmentation (training only)
    train_crop: str = "random"
    train_crop_min_scale: float = 0.25
    train_crop_min_ratio: float = 0.75
    initial_scale: float = 1.0
    n_scales: int = 5
    scale_step: float = 0.84089641525
    hflip: bool = True
    colorjitter: bool = False
    jitter_strength: Tuple[float, float, float, float] = DEFAULT_JITTER
    # values the model sees (applied on the device)
    input_norm: InputNorm = field(default=KINETICS)
    # loading: worker processes; the default is default_num_workers(), whose rule in words is
    # hardware.DEFAULT_WORKERS_RULE (the one text the flags' help and docs/data.md show)
    num_workers: int = field(default_factory=default_num_workers)
    decoder: str = "auto"
    # JPEG decoding speed against fidelity to the originals' full-size PIL decode (docs/data.md,
    # "The fast path, measured"): decode at 1/2, 1/4 or 1/8 scale when the crop still spans
    # decode_tolerance x sample_size there (1.0: never upscale a reduced decode), and take
    # libjpeg-turbo's fast integer IDCT and chroma upsampling (fast_decode). decode_tolerance=1.0
    # with fast_decode=False is the exact mode.
    decode_tolerance: float = DEFAULT_DECODE_TOLERANCE
    fast_decode: bool = True
    # "cuda": dataset items carry JPEG bytes and crop boxes instead of pixels, and
    # ``resnet3d.data.gpu_decode.assemble_clips`` decodes, crops and resizes each batch on the
    # device (decode_tolerance and fast_decode do not apply: nvJPEG decodes at full size).
    # "mixed": a share of the batches so, the rest decoded by the workers (data.decode_share)
    decode_device: str = "cpu"

    def __post_init__(self) -> None:
        checks = (
            ("dataset", self.dataset, DATASETS),
            ("file_type", self.file_type, FILE_TYPES),
            ("input_type", self.input_type, INPUT_TYPES),
            ("train_crop", self.train_crop, TRAIN_CROPS),
            ("train_t_crop", self.train_t_crop, TRAIN_T_CROPS),
            ("decoder", self.decoder, DECODERS),
            ("decode_device", self.decode_device, DECODE_DEVICES),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                raise UserError(f"{_named(name)} '{value}' is not one of: {', '.join(allowed)}")
        self._check_numbers()
        positive = ("sample_size", "sample_duration", "sample_t_stride", "n_val_samples", "n_scales")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"{_named(name)} must be at least 1 (got {getattr(self, name)})")
        for name in ("initial_scale", "scale_step"):  # (0 made crops of no pixels, above 1 crops beyond the frame)
            if not 0 < getattr(self, name) <= 1:
                raise UserError(f"{_named(name)} must be in (0, 1]: the multi-scale crop's scales are fractions of "
                                f"the frame's short side, initial_scale x scale_step^i (got {getattr(self, name)})")
        if not 0 < self.train_crop_min_scale <= 1:
            raise UserError(f"train_crop_min_scale must be in (0, 1] (got {self.train_crop_min_scale})")
        if not 0 < self.train_crop_min_ratio <= 1:
            raise UserError(f"train_crop_min_ratio must be in (0, 1] (got {self.train_crop_min_ratio})")
        if self.num_workers < 0:
            raise UserError(f"num_workers (--n_threads) must be >= 0 (got {self.num_workers})")
        if not 0.5 <= self.decode_tolerance <= 1.0:
            raise UserError(
                f"decode_tolerance must be in [0.5, 1] (got {self.decode_tolerance}): 1.0 never upscales "
                "a reduced-scale JPEG decode, lower values accept that much upscaling for speed"
            )
        if self.decode_device != "cpu" and (self.file_type not in ("jpg", "hdf5") or self.input_type != "rgb"):
            raise UserError(
                f"decode_device='{self.decode_device}' decodes RGB JPEG frames (--file_type jpg or hdf5, --input_type "
                f"rgb), not --file_type {self.file_type} --input_type {self.input_type}: use --decode-device cpu"
            )
        if len(self.jitter_strength) != 4:
            raise UserError("jitter_strength needs 4 values: brightness, contrast, saturation, hue")

    def _check_numbers(self) -> None:
        """Numeric settings hold numbers: a config file's ``sample_size = "big"`` is one line naming
        the section and key, not a ValueError from the comparisons below."""
        for item in fields(self):
            value = getattr(self, item.name)
            if item.type in ("int", "float") and (isinstance(value, bool) or not isinstance(value, Number)):
                kind = "an integer" if item.type == "int" else "a number"
                raise UserError(f"[data] {item.name}: expected {kind}, got {value!r}")
            if item.type == "int" and isinstance(value, Number) and value != int(value):
                raise UserError(f"[data] {item.name}: expected an integer, got {value!r}")

    @property
    def n_channels(self) -> int:
        """Colour channels of a clip: 3 for RGB, 2 for optical flow (x and y)."""
        return 2 if self.input_type == "flow" else 3

    @property
    def scales(self) -> Tuple[float, ...]:
        """The multi-scale crop's scales: initial_scale * scale_step**i for i < n_scales."""
        return tuple(self.initial_scale * self.scale_step**i for i in range(self.n_scales))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["input_norm"] = self.input_norm.to_dict()
        data["jitter_strength"] = list(self.jitter_strength)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DataConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "input_norm" in values and not isinstance(values["input_norm"], InputNorm):
            values["input_norm"] = InputNorm.from_dict(values["input_norm"])
        if "jitter_strength" in values:
            values["jitter_strength"] = tuple(float(v) for v in values["jitter_strength"])
        return cls(**values)

    def with_changes(self, **changes: Any) -> "DataConfig":
        return replace(self, **changes)
