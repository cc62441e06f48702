"""`resnet3d bench train` on the CPU at toy sizes: four JSON lines, ours and the baseline, from one run."""
import json

import pytest

from engine_helpers import resnet3d

pytestmark = pytest.mark.slow


def test_bench_train_prints_ours_and_the_baseline():
    done = resnet3d("bench", "train", "--model", "resnet", "--model_depth", "10", "--resnet_widen_factor", "0.25",
                    "--n_classes", "8", "--batch_size", "4", "--sample_size", "16", "--sample_duration", "4",
                    "--n_threads", "0", "--steps", "2", "--warmup", "1", "--frame-size", "24x32",
                    "--generate-videos", "8", "--device", "cpu")
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["what"], r["baseline"]) for r in records] == [
        ("train_step", True), ("train_step", False), ("train_end_to_end", True), ("train_end_to_end", False)]
    for record in records:
        assert record["clips_per_s"] > 0 and record["model"] == "resnet-10" and record["batch_size"] == 4
        assert "machine" in record
    assert records[0]["precision"] == "fp32" and records[1]["precision"] == "fp32"  # CPU: no autocast by default
    assert "speedup" in records[1] and "speedup" in records[3]
    assert 0.0 <= records[3]["data_wait_share"] <= 1.0
