"""``resnet3d bench train --sweep``: the step matrix (``train_step_sweep`` lines). Its plan
(precision x memory format x compile mode x batch size), the parsing of its flags, and the run
that measures each setting in isolation: a setting's failure is its line's "error", not the
end of the sweep."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from resnet3d.bench.common import emit
from resnet3d.bench.train_parts import Deadline, baseline_step, build_model, common_fields, layout, ours_parts, \
    peak_memory, release, sgd, timed
from resnet3d.config import check_compile_mode
from resnet3d.engine.compilation import compile_errors_explained
from resnet3d.errors import UserError

COMPILE_OFF = "drop it from --compile-modes"
# Not even tried: torch 2.13's CPU kernels for a ResNet's 3-D convolutions in bf16 hang in the
# backward pass or crash the process (measured on the 2-core AMD EPYC CI machine), which no
# try/except can isolate; the sweep is for GPUs, and CPU runs of it check its logic in fp32.
CPU_HALF_PRECISION = "bf16/fp16 are not run on the CPU (3-D convolutions in bf16 hang or crash there): pass --precisions fp32"


def _int_list(text: Optional[str], flag: str) -> List[int]:
    try:
        values = [int(v) for v in (text or "").split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected whole numbers separated by commas, such as 64,128") from None
    if any(v < 1 for v in values):
        raise UserError(f"{flag} {text!r}: every value must be 1 or more")
    return values


def parse_compile_modes(text: str) -> List[str]:
    """``--compile-modes`` -> the modes to compile with ('none' and empty entries dropped: the
    uncompiled configuration is in the sweep anyway)."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    for mode in modes:
        check_compile_mode(mode, "--compile-modes: mode")
    return list(dict.fromkeys(m for m in modes if m != "none"))


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:600]


@dataclass(frozen=True)
class StepSetting:
    """One configuration of the sweep."""

    precision: str  # fp32 | bf16 | fp16
    channels_last: bool
    compile_mode: str = "none"
    baseline: bool = False  # the originals' step (fp32, NCDHW float input, torch's default SGD)
    stem_pad: int = 0  # the stem's input channels rounded up to this multiple (models.stem)

    @property
    def name(self) -> str:
        if self.baseline:
            return "baseline fp32 NCDHW"
        name = f"{self.precision} {'channels_last_3d' if self.channels_last else 'NCDHW'}"
        name += f" stem padded to {self.stem_pad} channels" if self.stem_pad else ""
        return name + (f" compile {self.compile_mode}" if self.compile_mode != "none" else "")


def sweep_plan(batch_sizes: Sequence[int], compile_modes: Sequence[str],
               precisions: Sequence[str] = ("fp32", "bf16"), stem_pad: int = 0) -> List[Tuple[StepSetting, int]]:
    """Every (setting, batch size): the baseline, each precision in NCDHW and channels_last_3d
    (with ``stem_pad``, also the last precision in channels_last_3d with the padded stem), then
    the last precision in channels_last_3d compiled in each mode. Eager ones come first, so
    that a time budget cuts the compiled ones (minutes each) rather than the cheap comparisons;
    each batch size's baseline comes before the settings measured against it."""
    eager = [StepSetting("fp32", False, baseline=True)]
    eager += [StepSetting(precision, layout) for precision in precisions for layout in (False, True)]
    if stem_pad:
        eager.append(StepSetting(precisions[-1], True, stem_pad=stem_pad))
    plan = [(setting, n) for n in batch_sizes for setting in eager]
    plan += [(StepSetting(precisions[-1], True, mode), n) for mode in compile_modes for n in batch_sizes]
    return plan


SWEEP_PRECISIONS = ("fp32", "bf16", "fp16")


def parse_precisions(text: str) -> List[str]:
    precisions = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in precisions if p not in SWEEP_PRECISIONS]
    if unknown or not precisions:
        raise UserError(f"--precisions {text!r}: choose among {', '.join(SWEEP_PRECISIONS)}, separated by commas")
    return precisions


def _measure_setting(args, device: torch.device, setting: StepSetting, n: int) -> Dict[str, Any]:
    from resnet3d.engine.loop import train_step
    from resnet3d.engine.optim import sgd_kernel_name

    t, s = args.sample_duration, args.sample_size
    targets = torch.randint(0, args.n_classes, (n,), device=device)
    if setting.baseline:
        model = build_model(args, device, channels_last=False)
        optimizer = sgd(model)
        x = torch.randn(n, 3, t, s, s, device=device)  # (N, C, T, H, W) float32

        def step() -> None:
            baseline_step(model, optimizer, x, targets)
    else:
        parts, _ = ours_parts(args, device, precision=setting.precision, channels_last=setting.channels_last,
                              compile_mode=setting.compile_mode, stem_pad=setting.stem_pad)
        optimizer = parts.optimizer
        clips = torch.randint(0, 256, (n, t, s, s, 3), dtype=torch.uint8, device=device)  # (N, T, H, W, C)

        def step() -> None:
            train_step(parts, clips, targets)
    with compile_errors_explained(setting.compile_mode, COMPILE_OFF):
        warmup_s, seconds = timed(device, args.steps, args.warmup, step)
    return {"clips_per_s": round(n * args.steps / seconds, 2), "step_ms": round(1000 * seconds / args.steps, 3),
            "warmup_s": round(warmup_s, 2), "sgd": sgd_kernel_name(optimizer), **peak_memory(device)}


def run_sweep(args, device: torch.device, deadline: Deadline) -> None:
    batch_sizes = _int_list(args.batch_sizes, "--batch-sizes") or [args.batch_size]
    plan = sweep_plan(batch_sizes, parse_compile_modes(args.compile_modes), parse_precisions(args.precisions),
                      args.stem_pad)
    if args.no_baseline:
        plan = [(setting, n) for setting, n in plan if not setting.baseline]
    baselines: Dict[int, float] = {}
    release(device, compiled=False)
    for at, (setting, n) in enumerate(plan):
        if deadline.spent():
            emit({"what": "train_step_sweep", "skipped": [f"{s.name} @ batch {b}" for s, b in plan[at:]],
                  "reason": deadline.reason()})
            return
        record: Dict[str, Any] = {
            "what": "train_step_sweep", "setting": setting.name, "baseline": setting.baseline,
            **common_fields(args, device, n), "precision": setting.precision, "memory_format": layout(setting.channels_last),
            "compile_mode": setting.compile_mode, **({"stem_pad": setting.stem_pad} if setting.stem_pad else {})}
        if device.type == "cpu" and setting.precision != "fp32":
            record["skipped"] = CPU_HALF_PRECISION
            emit(record)
            continue
        try:
            record.update(_measure_setting(args, device, setting, n))
        except Exception as error:  # out of memory, a compile failure: this setting's, not the sweep's
            record["error"] = _one_line(error)
        release(device, compiled=setting.compile_mode != "none")
        if "clips_per_s" in record:
            if setting.baseline:
                baselines[n] = record["clips_per_s"]
            elif n in baselines:
                record["speedup"] = round(record["clips_per_s"] / baselines[n], 2)
        emit(record)
