"""Recognition's main-thread bookkeeping per video, with the model and the data made trivial:
chunks of 10 windows (the seed's windows of a 160-frame video) of tiny uint8 views, a model that
returns zeros for 400 classes. What is left is what ``engine.predict`` does per chunk, batch and
video on its main thread (batching, booking the scores, the top-k, the results writer): the
ceiling that bookkeeping puts on videos/s, however fast the GPU and the workers are.

    python scripts/recognition_bookkeeping.py       # JSON lines
"""
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from resnet3d.data import DeviceTransform
from resnet3d.engine import results as resultfiles
from resnet3d.engine.scoring import RowBatcher, Scorer, Tally, result_entry
from resnet3d.normalization import KINETICS

N_CLASSES, WINDOWS, BATCH = 400, 10, 64


class Zeros(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], N_CLASSES)


def run(n_videos: int) -> float:
    """Seconds the main thread spends on ``n_videos`` videos' bookkeeping."""
    names = [f"class {i}" for i in range(N_CLASSES)]
    scorer = Scorer(Zeros(), DeviceTransform(KINETICS, train=False), torch.device("cpu"))
    batcher, tally = RowBatcher(BATCH), Tally(keep_windows=False)
    with tempfile.TemporaryDirectory(prefix="resnet3d-bookkeeping-") as folder:  # (removed after the run)
        return _timed(n_videos, names, scorer, batcher, tally, Path(folder) / "results.json")


def _timed(n_videos, names, scorer, batcher, tally, results: Path) -> float:
    writer = resultfiles.ResultWriter(results, "successor", 100, order=[str(i) for i in range(n_videos)])
    rows = torch.zeros(WINDOWS, 2, 4, 4, 3, dtype=torch.uint8)
    window, segment = torch.arange(WINDOWS), torch.zeros(WINDOWS, 2, dtype=torch.int64)

    def book(ready) -> None:
        for scores, meta in ready:
            for unit in tally.on_scores(scores, meta):
                writer.add(str(unit), result_entry(tally.pop(unit), names, 5, True))

    started = time.perf_counter()
    for unit in range(n_videos):
        tally.on_chunk({"unit": unit, "expected": WINDOWS, "rows": rows, "bad_frames": 0})
        batcher.add(unit, rows, window, segment)
        for batch, meta in batcher.batches():
            book(scorer.submit(batch, meta))
    for batch, meta in batcher.batches(flush=True):
        book(scorer.submit(batch, meta))
    book(scorer.drain())
    assert len(writer.results) == n_videos
    return time.perf_counter() - started


if __name__ == "__main__":
    run(200)  # warm-up
    for n in (2000, 2000):
        seconds = run(n)
        print(json.dumps({"what": "recognition_bookkeeping", "videos": n, "seconds": round(seconds, 3),
                          "videos_per_s": round(n / seconds, 1), "ms_per_video": round(seconds / n * 1e3, 3)}))
