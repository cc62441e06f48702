"""What the measurements of ``resnet3d bench train`` share: ``--time-budget`` (``Deadline``),
the models and optimisers of both sides built as the trainer (ours) and the originals (the
baseline) build them, their steps, the timing of a run of steps, and the fields every line
carries (model, sizes, device, memory format, peak GPU memory)."""
from __future__ import annotations

import gc
import time
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn

from resnet3d.engine.compilation import compile_model, reset_compiler
from resnet3d.engine.precision import autocast_dtype
from resnet3d.models.stem import pad_stem_channels


# -- small helpers ------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Deadline:
    """``--time-budget``: whether the time is spent (0: never)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.start = clock()

    def spent(self) -> bool:
        return self.seconds > 0 and self.clock() - self.start >= self.seconds

    def reason(self) -> str:
        return f"--time-budget {self.seconds:g} s spent ({self.clock() - self.start:.0f} s)"


def release(device: torch.device, compiled: bool) -> None:
    """Give back what one configuration held before the next starts."""
    if compiled:
        reset_compiler()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# -- models, optimisers, steps -----------------------------------------------------------------


def build_model(args, device: torch.device, channels_last: bool) -> nn.Module:
    from resnet3d.models import create_model, model_options

    kwargs: Dict[str, Any] = {"n_classes": args.n_classes}
    if "widen_factor" in model_options(args.model):
        kwargs["widen_factor"] = args.resnet_widen_factor
    if "sample_size" in model_options(args.model):
        kwargs.update(sample_size=args.sample_size, sample_duration=args.sample_duration)
    torch.manual_seed(0)
    model = create_model(args.model, args.model_depth if args.model != "c3d" else None, **kwargs).to(device)
    return model.to(memory_format=torch.channels_last_3d) if channels_last else model


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    """The originals' optimiser: torch's SGD as it comes."""
    return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-3)


def ours_parts(args, device: torch.device, *, precision: str, channels_last: bool, compile_mode: str,
               data_cfg=None, stem_pad: int = 0):
    """Our step's parts, built by the trainer's rules: autocast dtype from ``precision``, the
    optimiser of ``build_optimizer`` (fused SGD on CUDA), the model compiled by
    ``compile_model``, the device transform of the data config."""
    from resnet3d.config import OptimConfig
    from resnet3d.data import DataConfig, DeviceTransform
    from resnet3d.engine.loop import StepParts
    from resnet3d.engine.optim import build_optimizer

    dtype = autocast_dtype(precision, device)
    model = build_model(args, device, channels_last=channels_last)
    pad_stem_channels(model, stem_pad)  # 0: the stem as it is
    stepped = compile_model(model, compile_mode)
    optimizer = build_optimizer(model.parameters(), OptimConfig(learning_rate=1e-3, momentum=0.9, weight_decay=1e-3))
    cfg = data_cfg if data_cfg is not None else DataConfig()
    return StepParts(model=stepped, eval_model=stepped, optimizer=optimizer,
                     scaler=torch.amp.GradScaler("cuda") if dtype == torch.float16 else None, device=device,
                     amp_dtype=dtype, train_transform=DeviceTransform.from_config(cfg, train=True),
                     eval_transform=DeviceTransform.from_config(cfg, train=False), channels_last=channels_last), dtype


def baseline_step(model: nn.Module, optimizer, x: torch.Tensor, targets: torch.Tensor) -> None:
    loss = nn.functional.cross_entropy(model(x), targets)  # fp32, NCDHW: the originals' step
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def timed(device: torch.device, steps: int, warmup: int, step) -> Tuple[float, float]:
    """(seconds of the warm-up steps, seconds of the timed steps)."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    middle = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return middle - start, time.perf_counter() - middle


def common_fields(args, device: torch.device, batch_size: Optional[int] = None) -> Dict[str, Any]:
    record = {"model": f"{args.model}-{args.model_depth}" if args.model != "c3d" else "c3d",
              "batch_size": batch_size or args.batch_size, "sample_size": args.sample_size,
              "sample_duration": args.sample_duration, "device": str(device)}
    if args.resnet_widen_factor != 1.0:
        record["widen_factor"] = args.resnet_widen_factor
    return record


def peak_memory(device: torch.device) -> Dict[str, float]:
    if device.type != "cuda":
        return {}
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return {"peak_memory_gib": round(peak, 2)}


def layout(channels_last: bool) -> str:
    return "channels_last_3d" if channels_last else "NCDHW (contiguous)"
