"""How ``resnet3d classify`` runs its model: the one place that says it, so that ``bench classify``
measures exactly what the command does.

- the model: in eval mode on the device, each BatchNorm folded into its conv (``fold_bn``),
  channels_last_3d weights (oneDNN and cuDNN run 3-D convolutions faster so), cuDNN autotuning
  (every clip is a centred square of one size), autocast as ``precision`` says;
- the input: uint8 clips normalised on the device (``DeviceTransform``);
- on a CPU device, the model's threads split from the decoding thread's and FFmpeg's
  (``CpuThreadSplit``, settled after the first batch).
"""
from __future__ import annotations

import torch

from resnet3d.engine.scoring import CpuThreadSplit
from resnet3d.normalization import InputNorm


def classify_scorer(model: torch.nn.Module, input_norm: InputNorm, device: torch.device, mode: str,
                    precision: str, fold_bn: bool):
    """A ``resnet3d.engine.predict.Scorer`` of softmax scores (score mode) or pooled features
    (feature mode). ``model`` is moved to ``device`` and, unless folded (a copy), converted to
    channels_last_3d in place."""
    from resnet3d.data import DeviceTransform
    from resnet3d.engine.precision import autocast_dtype
    from resnet3d.engine.predict import Scorer, prepare_model
    from resnet3d.engine.scoring import autotune_convolutions

    model = prepare_model(model, device, channels_last=True, fold_bn=fold_bn)
    autotune_convolutions(device, fixed_shapes=True)  # every clip a centred square of one size
    transform = DeviceTransform(input_norm, train=False)
    forward = model.forward_features if mode == "feature" else None
    return Scorer(model, transform, device, autocast_dtype(precision, device), softmax=mode == "score",
                  forward=forward)


def classify_thread_split(device: torch.device) -> CpuThreadSplit:
    """The model's threads beside the decoding of the next clips (a CPU device; nothing on a
    GPU). Give them back with ``restore()`` on every path."""
    from resnet3d.classify.clips import FFMPEG_THREADS

    return CpuThreadSplit(device, workers=FFMPEG_THREADS, settle_batches=1)
