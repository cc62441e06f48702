"""``resnet3d bench train --only step`` without ``--sweep``: the GPU step alone, one
``train_step`` line per side (ours as the trainer sets it up, the originals' step), and with
``--profile N`` a ``train_step_profile`` line per side (``resnet3d.bench.step_profile``)."""
from __future__ import annotations

import torch

from resnet3d.bench.common import emit
from resnet3d.bench.step_profile import profile_step
from resnet3d.bench.train_parts import baseline_step, build_model, common_fields, layout, ours_parts, peak_memory, \
    release, sgd, timed
from resnet3d.engine.compilation import compile_errors_explained
from resnet3d.engine.precision import NAMES as PRECISION_NAMES


def measure_steps(args, device: torch.device) -> None:
    from resnet3d.engine.loop import train_step
    from resnet3d.engine.optim import sgd_kernel_name

    n, t, s = args.batch_size, args.sample_duration, args.sample_size
    targets = torch.randint(0, args.n_classes, (n,), device=device)
    records = []
    if not args.no_baseline:
        model = build_model(args, device, channels_last=False)
        optimizer = sgd(model)
        x = torch.randn(n, 3, t, s, s, device=device)  # (N, C, T, H, W) float32
        _, seconds = timed(device, args.steps, args.warmup, lambda: baseline_step(model, optimizer, x, targets))
        records.append({"what": "train_step", "baseline": True, **common_fields(args, device),
                        "clips_per_s": round(n * args.steps / seconds, 2), "precision": "fp32",
                        "memory_format": layout(False), "sgd": sgd_kernel_name(optimizer), **peak_memory(device)})
        if args.profile:
            records.append({"what": "train_step_profile", "baseline": True, **common_fields(args, device),
                            "precision": "fp32", "memory_format": layout(False),
                            **profile_step(lambda: baseline_step(model, optimizer, x, targets), device, args.profile)})
        del model, optimizer, x
        release(device, compiled=False)
    channels_last = device.type == "cuda"  # as the trainer: it pays on CUDA only
    parts, dtype = ours_parts(args, device, precision=args.precision, channels_last=channels_last,
                              compile_mode=args.compile_mode)
    clips = torch.randint(0, 256, (n, t, s, s, 3), dtype=torch.uint8, device=device)  # (N, T, H, W, C)
    with compile_errors_explained(args.compile_mode):
        warmup_s, seconds = timed(device, args.steps, args.warmup, lambda: train_step(parts, clips, targets))
    ours = {"what": "train_step", "baseline": False, **common_fields(args, device),
            "clips_per_s": round(n * args.steps / seconds, 2),
            "precision": PRECISION_NAMES[dtype], "memory_format": layout(parts.channels_last),
            "compile_mode": args.compile_mode, "sgd": sgd_kernel_name(parts.optimizer),
            "warmup_s": round(warmup_s, 2), **peak_memory(device)}
    if records:
        ours["speedup"] = round(ours["clips_per_s"] / records[0]["clips_per_s"], 2)
    profiles = []
    if args.profile:
        with compile_errors_explained(args.compile_mode):
            profiles.append({"what": "train_step_profile", "baseline": False, **common_fields(args, device),
                             "precision": PRECISION_NAMES[dtype], "memory_format": layout(parts.channels_last),
                             "compile_mode": args.compile_mode,
                             **profile_step(lambda: train_step(parts, clips, targets), device, args.profile)})
    for record in records + [ours] + profiles:
        emit(record)
