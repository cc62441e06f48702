"""What several ``bench`` tests share: ``resnet3d bench test`` on a tiny generated data set."""
from __future__ import annotations

import json
from typing import List

from resnet3d.cli import main


def bench_test_lines(data_dir, capsys, *extra: str) -> List[dict]:
    """The JSON lines of ``resnet3d bench test`` with a ResNet-10 of quarter width at 4x32x32 on
    the CPU, no workers, over 4 generated 8-frame videos in ``data_dir`` (made once, reused)."""
    status = main(["bench", "test", "--synthetic-dir", str(data_dir), "--videos", "4", "--frames", "8",
                   "--height", "32", "--width", "40", "--model_depth", "10", "--resnet_widen_factor", "0.25",
                   "--n_classes", "8", "--sample_size", "32", "--sample_duration", "4", "--n_threads", "0",
                   "--batch_size", "4", "--device", "cpu", *extra])
    assert status == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
