"""Where one training step's time goes: ``resnet3d bench train --only step --profile N``.

The step benchmark says how fast the step is; this says which kernels make it so. ResNet-18's
eager bf16 step on an H200 ran at 2,000 clips/s, about 100 TFLOP/s of its arithmetic (forward
~8.3 GMACs a clip, a third of it in the 3-channel 7x7x7 stem), a tenth of the card's bf16 peak,
and bf16 was only 11% faster than fp32: the time is not in tensor-core arithmetic. A profile
tells whether it is in the stem's convolution, its weight gradient, the BatchNorm passes that
``torch.compile`` would fuse, or elsewhere.

``profile_step`` runs N steps under ``torch.profiler`` and sums each kernel's own device time
(CUDA), or each operator's own CPU time (on a CPU, where there are no kernels), per step, and
by kind of work: convolution, BatchNorm, pooling, elementwise, reductions, optimiser, copies,
matrix products, other.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Tuple

import torch

# The first pattern a kernel's (or operator's) name matches names its kind. BatchNorm comes
# before convolution: cuDNN's BatchNorm kernels are named "cudnn::bn_..."; matrix products come
# after convolution: cuDNN's implicit-GEMM convolutions have "gemm" in their names.
KINDS: Tuple[Tuple[str, "re.Pattern[str]"], ...] = (
    ("batch_norm", re.compile(r"batch_norm|batchnorm|\bbn_|::bn_", re.I)),
    ("convolution", re.compile(r"conv|fprop|dgrad|wgrad|implicit|winograd|im2col|col2im|cudnn", re.I)),
    ("pooling", re.compile(r"pool", re.I)),
    ("optimizer", re.compile(r"multi_tensor|sgd|foreach|_fused_", re.I)),
    ("copy", re.compile(r"memcpy|memset|copy|cat_|\bcat\b|contiguous|to_copy|tonhwc|tonchw|transpose|permute", re.I)),
    ("matmul", re.compile(r"gemm|matmul|addmm|\bmm\b|linear|cublas|cutlass", re.I)),
    ("reduction", re.compile(r"reduce|sum|mean|norm|softmax|nll|cross_entropy", re.I)),
    ("elementwise", re.compile(r"elementwise|vectorized|relu|threshold|add|mul|fill|where|clamp", re.I)),
)


def kind_of(name: str) -> str:
    """The kind of work a kernel or operator name stands for ("other" when none matches)."""
    for kind, pattern in KINDS:
        if pattern.search(name):
            return kind
    return "other"


def _self_time_us(event: Any, on_device: bool) -> float:
    """An aggregated event's own time in microseconds: on the device (CUDA kernels) or the CPU.
    torch 2.4 renamed ``self_cuda_time_total`` to ``self_device_time_total``."""
    if on_device:
        value = getattr(event, "self_device_time_total", None)
        if value is None:
            value = getattr(event, "self_cuda_time_total", 0.0)
        return float(value or 0.0)
    return float(event.self_cpu_time_total or 0.0)


def summarize(events: List[Tuple[str, float]], steps: int, top: int = 12) -> Dict[str, Any]:
    """(name, microseconds) pairs over ``steps`` steps -> the profile record: milliseconds per
    step in all, the ``top`` names with their share, and the shares by kind."""
    totals: Dict[str, float] = {}
    for name, micros in events:
        if micros > 0:
            totals[name] = totals.get(name, 0.0) + micros
    whole = sum(totals.values())
    by_kind: Dict[str, float] = {}
    for name, micros in totals.items():
        kind = kind_of(name)
        by_kind[kind] = by_kind.get(kind, 0.0) + micros
    ranked = sorted(totals.items(), key=lambda item: item[1], reverse=True)[:top]
    share = (lambda micros: round(micros / whole, 4)) if whole else (lambda micros: 0.0)
    return {
        "profiled_ms_per_step": round(whole / 1000.0 / max(1, steps), 3),
        "by_kind": {kind: share(micros) for kind, micros in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "top": [{"name": name[:160], "kind": kind_of(name), "ms_per_step": round(micros / 1000.0 / max(1, steps), 3),
                 "share": share(micros)} for name, micros in ranked],
    }


def device_kernels(averages: List[Any]) -> List[Any]:
    """The aggregated CUDA kernels and copies of a profile, without the device-side copies of
    ``record_function`` ranges ("gpu_user_annotation": ``Optimizer.step#SGD.step`` spans the
    optimiser's kernels, so counting it would count them twice; torch's own totals leave them out
    since 2.5). torch 2.4 has no ``is_user_annotation`` flag: there such a range is the device
    event that bears the name of a CPU event."""
    from torch.autograd import DeviceType

    cpu_names = {event.key for event in averages if getattr(event, "device_type", None) == DeviceType.CPU}
    kernels = []
    for event in averages:
        if getattr(event, "device_type", None) != DeviceType.CUDA:
            continue
        annotation = getattr(event, "is_user_annotation", None)
        if annotation is None:
            annotation = event.key in cpu_names
        if not annotation:
            kernels.append(event)
    return kernels


def profile_step(step: Callable[[], None], device: torch.device, steps: int) -> Dict[str, Any]:
    """Run ``step`` ``steps`` times under the profiler (after the caller's warm-up) and return
    ``summarize`` of its kernels (CUDA) or operators (CPU), with what was measured in "timing"."""
    from torch.profiler import ProfilerActivity, profile

    on_device = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_device else [])
    with profile(activities=activities) as profiler:
        for _ in range(steps):
            step()
        if on_device:
            torch.cuda.synchronize(device)
    # On CUDA the kernels and copies are events of their own, on the device; the operators that
    # launched them report the same time as theirs, so only the device events are summed (else
    # every kernel would count twice). On the CPU the operators' self time adds up to the step
    # without counting a nested call twice.
    averages = profiler.key_averages()
    if on_device:
        averages = device_kernels(averages)
    events = [(event.key, _self_time_us(event, on_device)) for event in averages]
    record = summarize(events, steps)
    record["timing"] = "device time of each CUDA kernel" if on_device else "CPU self time of each operator"
    record["profiled_steps"] = steps
    return record
