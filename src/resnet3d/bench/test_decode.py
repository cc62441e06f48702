"""``resnet3d bench test --decode-only``: recognition's frames per CPU second, ours and the
originals', without a model.

Both sides of ``bench test`` decode on the same number of workers, so the ratio of their
per-core decoding rates bounds what recognition can gain where decoding is the limit (on a GPU
it is: the model's forward pass takes a small part of a second per video). Here each side reads
every window of the same videos in this one process, on one thread, and is timed by the CPU
seconds it used (``time.process_time``: other load on the machine does not count):

- baseline: ``OneVideoBaseline`` (PIL decode of the full frame, resize, centre crop, float
  tensor, normalised, per frame), as the originals' per-video scheme does in its workers;
- ours: ``engine.windows.WindowDataset``, the recognition workers' dataset (the centre crop
  decoded at the smallest DCT scale that covers it, one resize per chunk, uint8 out).
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

import torch


def _ours(videos: List[Any], data, plan) -> int:
    """Views read by the recognition workers' dataset, in this process."""
    from resnet3d.engine.windows import WindowDataset, group_units

    units = group_units(videos, {video.key: video.key for video in videos})
    views = 0
    for chunk in WindowDataset(videos, units, data, plan):
        if "error" in chunk:
            raise RuntimeError(f"{chunk.get('unit')}: {chunk['error']}")
        views += len(chunk["rows"])
    return views


def _baseline(videos: List[Any], data) -> int:
    """Views made by the originals' scheme, in this process."""
    from resnet3d.bench.test import baseline_dataset

    dataset = baseline_dataset(videos, data)
    return sum(len(dataset[i]) for i in range(len(dataset)))


def measure_decoding(videos: List[Any], data, repeat: int = 2) -> List[Dict[str, Any]]:
    """One record per side: views, frames and CPU seconds over ``repeat`` passes, frames per
    CPU second; ours with ``speedup_per_core``. The sides take turns, pass by pass, so a busy
    spell on a shared machine falls on both."""
    from resnet3d.engine.windows import ViewPlan

    plan = ViewPlan(sample_duration=data.sample_duration, sample_size=data.sample_size, scheme="seed",
                    stride=data.sample_duration, crop="center")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core, as each worker has
    try:
        _ours(videos[:1], data, plan), _baseline(videos[:1], data)  # imports, first buffers
        totals = {"baseline": [0, 0.0], "ours": [0, 0.0]}
        for _ in range(repeat):
            for side, run in (("baseline", lambda: _baseline(videos, data)), ("ours", lambda: _ours(videos, data, plan))):
                start = time.process_time()
                views = run()
                totals[side][1] += time.process_time() - start
                totals[side][0] += views
    finally:
        torch.set_num_threads(threads)
    records = []
    for side, (views, seconds) in totals.items():
        frames = views * data.sample_duration
        records.append({"what": "test_decode", "baseline": side == "baseline", "views": views, "frames": frames,
                        "cpu_seconds": round(seconds, 3), "frames_per_s_per_core": round(frames / seconds, 1),
                        "scheme": ("PIL per frame: full decode, resize, centre crop, float, normalise"
                                   if side == "baseline" else
                                   "recognition workers: centre crop at the smallest DCT scale, one resize per "
                                   "chunk, uint8")})
    records[1]["speedup_per_core"] = round(records[1]["frames_per_s_per_core"] / records[0]["frames_per_s_per_core"], 2)
    return records
