"""Flags on the input frames that several commands share: how JPEG frames are decoded
(``add_decode_flags``, read back by ``decode_settings``) and a data set's own mean and standard
deviation (``add_mean_std_flags``, turned into an ``InputNorm`` by ``mean_std_norm``).

Light on purpose: the commands register these flags for ``--help``, which must not import torch.
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, Optional

from resnet3d.cliargs import add_flag, add_switch, show_value
from resnet3d.data.config import DECODE_DEVICES, DECODERS, DEFAULT_DECODE_TOLERANCE
from resnet3d.errors import UserError
from resnet3d.normalization import InputNorm


def add_decode_flags(group: argparse._ActionsContainer, decode_device: bool = True) -> None:
    """How JPEG frames are decoded (``DataConfig.decoder``, ``decode_tolerance``, ``fast_decode``;
    docs/data.md; and, with ``decode_device``, ``DataConfig.decode_device``). Absent flags leave no
    attribute: the config file's, the checkpoint's or the default setting applies. Shared by
    ``main``, ``train`` and ``bench loader``."""
    quiet = argparse.SUPPRESS
    add_flag(group, "--decoder", default=quiet, choices=DECODERS, help="JPEG decoder (default auto)")
    add_flag(group, "--decode-tolerance", type=float, default=quiet, metavar="X",
             help=f"decode JPEGs at 1/2, 1/4 or 1/8 scale when the crop still spans X times the clip size "
                  f"there (default {DEFAULT_DECODE_TOLERANCE}; 1.0 never upscales: with --no-fast-decode, the exact "
                  "mode)")
    add_switch(group, "--fast-decode", quiet,
               "libjpeg-turbo's fast integer IDCT and chroma upsampling (default on; --no-fast-decode: exact)")
    if not decode_device:
        return
    add_flag(group, "--decode-device", default=quiet, choices=DECODE_DEVICES,
             help="where training, validation and recognition decode JPEG frames: cpu (loader workers, "
                  "libjpeg-turbo; default), cuda (workers read the bytes; nvJPEG through torchvision decodes, "
                  "crops and resizes each batch on the GPU) or mixed (both at once, the GPU's share of the batches "
                  "found as the run goes: for machines with few cores per GPU)")


DECODE_SETTINGS = ("decoder", "decode_tolerance", "fast_decode", "decode_device")


def decode_settings(args: argparse.Namespace, decode_device: bool = True) -> Dict[str, Any]:
    """The ``DataConfig`` decode settings given by ``add_decode_flags``' flags (with the same
    ``decode_device`` choice)."""
    keys = DECODE_SETTINGS if decode_device else tuple(k for k in DECODE_SETTINGS if k != "decode_device")
    return {key: getattr(args, key) for key in keys if hasattr(args, key)}


def add_mean_std_flags(group: argparse._ActionsContainer) -> None:
    """``--mean R G B --std R G B``: a data set's own statistics, as ``resnet3d prepare stats``
    prints them (0-1 units). Shared by ``main``, ``train``, ``test`` and ``classify``."""
    add_flag(group, "--mean", type=float, nargs=3, metavar=("R", "G", "B"), default=argparse.SUPPRESS,
             help="per-channel mean of the frames in 0-1 units (resnet3d prepare stats prints it); with --std")
    add_flag(group, "--std", type=float, nargs=3, metavar=("R", "G", "B"), default=argparse.SUPPRESS,
             help="per-channel standard deviation of the frames in 0-1 units; with --mean")


def mean_std_norm(args: argparse.Namespace, value_scale: float = 1.0) -> Optional[InputNorm]:
    """The InputNorm of ``--mean/--std`` (None when neither was given).

    The values are in 0-1 units (value_scale 1); a ``value_scale`` other than 1 (the successor's
    ``--value_scale 255``) scales them as the successor scales its tables.
    """
    mean, std = getattr(args, "mean", None), getattr(args, "std", None)
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise UserError("--mean and --std go together: give both (resnet3d prepare stats prints the two flags)")
    if not all(0.0 <= m <= 1.0 for m in mean):
        raise UserError(f"--mean {show_value(mean)}: the values are in 0-1 units (resnet3d prepare stats prints them so); "
                        "for 0-255 values divide by 255")
    if not all(0.0 < s <= 1.0 for s in std):
        raise UserError(f"--std {show_value(std)}: the values must be > 0 and in 0-1 units (resnet3d prepare stats "
                        "prints them so)")
    if value_scale <= 0:
        raise UserError(f"--value_scale must be positive (got {value_scale:g})")
    scaled = lambda values: tuple(float(v) * value_scale for v in values)  # noqa: E731
    return InputNorm(mean=scaled(mean), std=scaled(std), value_scale=float(value_scale))  # type: ignore[arg-type]
