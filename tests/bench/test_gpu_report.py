"""``scripts/gpu_report.py``: a device session's $OUT -> the rows docs/benchmarks.md needs.

The folder below is written in the formats ``scripts/gpu_session.sh`` writes (env.txt from its
``environment``, log.txt's stage lines, bench.jsonl tagged with stages, the bench commands' own
JSON lines), as a GPU session would leave it.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_report.py"

ENV = """Thu Nov 26 18:46:13 UTC 2026
name, memory.total [MiB], driver_version, clocks.max.sm [MHz]
NVIDIA H200, 143771 MiB, 580.159.03, 1980 MHz
python 3.12.3 torch 2.11.0+cu130 cuda 13.0 cudnn 91300
torchvision 0.26.0
av 18.1.0 simplejpeg 1.9.0
cores 16, loader workers 15
"""

PY = "/opt/torch/.venv/bin/python3"
SWEEP = (f"{PY} -m resnet3d bench train --only step --sweep --device cuda --model_depth 18 --sample_size 112 "
         "--sample_duration 16 --batch-sizes 64,128")
TEST = f"{PY} -m resnet3d bench test --device cuda --model_depth 18 --compare-fold"
LOG = f"""== tests (limit 200s)
== tests: exit 0 at 150s
== step-r18 (limit 100s, at 151s): {SWEEP}
== step-r18: exit 0 at 230s
== recognition-r18 (limit 90s, at 231s): {TEST}
== recognition-r18: exit 124 at 321s
== step-r50: skipped, budget spent
== done at 330s
"""

MACHINE = {"python": "3.12.3", "cpus": 16, "usable_cpus": 16, "platform": "Linux", "torch": "2.11.0+cu130",
           "gpu": "NVIDIA H200"}
COMMON = {"model": "resnet-18", "sample_size": 112, "sample_duration": 16, "device": "cuda", "machine": MACHINE}
LINES = [
    {"what": "train_step_sweep", "setting": "baseline fp32 NCDHW", "baseline": True, "batch_size": 64,
     "clips_per_s": 1370.0, "stage": "step-r18", **COMMON},
    {"what": "train_step_sweep", "setting": "bf16 channels_last_3d", "baseline": False, "batch_size": 64,
     "clips_per_s": 2055.0, "speedup": 1.5, "peak_memory_gib": 9.5, "stage": "step-r18", **COMMON},
    {"what": "train_step_sweep", "setting": "baseline fp32 NCDHW", "baseline": True, "batch_size": 128,
     "clips_per_s": 1400.0, "stage": "step-r18", **COMMON},
    {"what": "train_step_sweep", "setting": "bf16 channels_last_3d", "baseline": False, "batch_size": 128,
     "clips_per_s": 2800.0, "stage": "step-r18", **COMMON},
    {"what": "test", "baseline": True, "scheme": "one video per batch, PIL + float per frame, fp32",
     "videos_per_s": 10.0, "stage": "recognition-r18", "clip": "16x112x112", **COMMON},
    {"what": "test", "baseline": False, "scheme": "batches across videos, BN folded into the convs", "batch_size": 64,
     "videos_per_s": 120.0, "speedup": 12.0, "top1_agreement": 1.0, "stage": "recognition-r18", **COMMON},
    {"stage": "step-r50", "skipped": "the session's budget is spent"},
]


def _session(tmp_path: Path) -> Path:
    out = tmp_path / "gpu-out"
    out.mkdir()
    (out / "env.txt").write_text(ENV)
    (out / "log.txt").write_text(LOG)
    (out / "bench.jsonl").write_text("".join(json.dumps(line) + "\n" for line in LINES) + "not json\n")
    (out / "tests.txt").write_text("....F\n=== 1 failed, 40 passed, 2 deselected in 149.20s ===\n")
    (out / "gpu_measures.jsonl").write_text(json.dumps({"test": "recognition_bf16_vs_cpu", "max_abs_difference": 0.004})
                                            + "\n")
    return out


def _report(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(out)], capture_output=True, text=True, timeout=60)


def _rows(text: str):
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split(" | ")]
    return header, [dict(zip(header, (cell.strip() for cell in line.strip("|").split(" | ")))) for line in lines[1:]]


def test_one_row_per_measurement_of_ours_with_its_baseline(tmp_path):
    done = _report(_session(tmp_path))
    assert done.returncode == 0, done.stderr
    header, rows = _rows(done.stdout)
    assert header == ["what", "card / machine", "date", "versions", "command", "ours", "baseline", "ratio"]
    assert len(rows) == 3  # the three lines of ours; baseline lines fill the baseline column
    for row in rows:
        assert row["card / machine"] == "NVIDIA H200 (143771 MiB, driver 580.159.03), 16 cores"
        assert row["date"] == "2026-11-26"
        assert "torch 2.11.0+cu130" in row["versions"] and "torchvision 0.26.0" in row["versions"]
    step64, step128, test = rows
    assert "bf16 channels_last_3d" in step64["what"] and "batch 64" in step64["what"]
    assert step64["command"] == ("stage step-r18: `resnet3d bench train --only step --sweep --device cuda "
                                 "--model_depth 18 --sample_size 112 --sample_duration 16 --batch-sizes 64,128`")
    assert step64["ours"] == "2055 clips/s (peak 9.5 GiB)" and step64["baseline"].startswith("1370 clips/s")
    assert step64["ratio"] == "1.5×"  # the line's own speedup
    # no speedup in the line: computed against the baseline of the same batch size
    assert step128["baseline"].startswith("1400 clips/s") and step128["ratio"] == "2.00× (computed)"
    assert test["ours"] == "120 videos/s (top-1 agreement 1)"
    assert test["baseline"] == "10 videos/s (one video per batch, PIL + float per frame, fp32)"
    assert test["ratio"] == "12.0×"


def test_notes_say_what_is_missing_and_what_the_tests_found(tmp_path):
    done = _report(_session(tmp_path))
    notes = done.stdout.split("\n\n", 1)[1]
    assert "- stage step-r50: skipped (the session's budget is spent)" in notes
    assert "- stage recognition-r18: exit 124 (its time limit" in notes
    assert "- CUDA tests: 1 failed, 40 passed, 2 deselected in 149.20s" in notes
    assert '"test": "recognition_bf16_vs_cpu"' in notes


def test_a_folder_without_results_is_one_line(tmp_path):
    done = _report(tmp_path)
    assert done.returncode == 2 and "bench.jsonl" in done.stderr and "gpu_session.sh" in done.stderr
    assert done.stdout == ""


def test_a_step_profile_row_names_where_the_time_goes(tmp_path):
    out = _session(tmp_path)
    profile = {"what": "train_step_profile", "batch_size": 64, "stage": "profile-r18", **COMMON}
    lines = [
        {**profile, "baseline": True, "precision": "fp32", "profiled_ms_per_step": 46.0,
         "by_kind": {"convolution": 0.7, "batch_norm": 0.2, "elementwise": 0.1}, "top": []},
        {**profile, "baseline": False, "precision": "bf16", "memory_format": "channels_last_3d",
         "profiled_ms_per_step": 31.5, "by_kind": {"convolution": 0.55, "batch_norm": 0.3, "copy": 0.15},
         "top": [{"name": "sm90_xmma_wgrad_implicit_gemm_ndhwc", "kind": "convolution", "ms_per_step": 9.0,
                  "share": 0.29}]},
    ]
    (out / "bench.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = _report(out)
    assert done.returncode == 0, done.stderr
    (row,) = _rows(done.stdout)[1]
    assert row["ours"] == ("31.5 ms profiled per step (convolution 55%, batch_norm 30%, copy 15%; "
                           "largest: sm90_xmma_wgrad_implicit_gemm_ndhwc 29%)")
    assert row["baseline"] == "46 ms profiled per step (convolution 70%, batch_norm 20%, elementwise 10%)"
    assert row["ratio"] == "–"
