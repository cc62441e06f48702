"""``resnet3d bench classify`` on PyAV-encoded MP4s at toy sizes: both sides' figures, the clips
``resnet3d classify`` writes, the baseline's JPEG extraction, and one line for a bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from resnet3d.cli import main
from resnet3d.synthetic import render_video, write_mp4

TINY_MODEL = ["--model_depth", "10", "--resnet_widen_factor", "0.125", "--n_classes", "8",
              "--sample_size", "32", "--sample_duration", "4", "--device", "cpu"]
FRAMES = {"a.mp4": 18, "sub/b.mp4": 9}  # 5 and 3 clips of 4 frames, the last ones loop-padded


@pytest.fixture(scope="module")
def own_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-classify-videos")
    rng = np.random.default_rng(3)
    for number, (name, frames) in enumerate(FRAMES.items()):
        write_mp4(root / name, render_video(number, frames, (48, 64), rng), fps=24)
    return root


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """Our checkpoint of the tiny model, so that classify and the bench run the same weights."""
    import torch

    from resnet3d.engine.checkpoint import save_checkpoint
    from resnet3d.models import create_model
    from resnet3d.normalization import SEED

    torch.manual_seed(0)
    model = create_model("resnet", 10, n_classes=8, widen_factor=0.125)
    path = tmp_path_factory.mktemp("bench-classify-model") / "model.pth"
    save_checkpoint(path, {"epoch": 1, "arch": "resnet-10", "model_config": model.model_config,
                           "state_dict": model.state_dict(), "optimizer": None, "scheduler": None,
                           "class_names": [f"class {i}" for i in range(8)], "input_norm": SEED.to_dict(),
                           "sample_size": 32, "sample_duration": 4})
    return path


def _lines(capsys):
    out = capsys.readouterr().out
    assert all(line.startswith("{") for line in out.splitlines()), out  # JSON lines only on stdout
    return [json.loads(line) for line in out.splitlines()]


def test_both_sides_report_and_classify_the_clips_classify_writes(own_videos, tiny_checkpoint, tmp_path, capsys):
    status = main(["bench", "classify", str(own_videos), "--weights", str(tiny_checkpoint), "--device", "cpu",
                   "--n_threads", "1", "--repeat", "2"])
    assert status == 0
    baseline, ours = _lines(capsys)
    assert baseline["baseline"] is True and ours["baseline"] is False
    assert baseline["what"] == ours["what"] == "classify" and ours["videos"] == 2 and ours["clip"] == "4x32x32"
    for line in (baseline, ours):
        for key in ("seconds", "cpu_seconds", "videos_per_s", "clips_per_s", "videos_per_cpu_s"):
            assert line[key] > 0, key
        assert len(line["seconds_by_repeat"]) == len(line["cpu_seconds_by_repeat"]) == 2
    assert ours["speedup"] > 0 and ours["speedup_per_cpu"] > 0 and len(ours["speedup_by_repeat"]) == 2
    assert ours["same_clips"] is True
    assert 0.5 <= ours["top1_agreement"] <= 1.0 and ours["top1_agreement_next_clip"] is not None

    out = tmp_path / "labels.json"
    assert main(["classify", str(own_videos), "--model", str(tiny_checkpoint), "--output", str(out),
                 "--device", "cpu"]) == 0
    written = sum(len(record["clips"]) for record in json.loads(out.read_text()))
    assert written == ours["clips"] == baseline["clips"] == 5 + 3


def test_the_baseline_extracts_every_frame_as_jpeg_files_and_removes_them(tmp_path, capsys, monkeypatch):
    import tempfile

    from resnet3d.bench import classify_baseline

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen = []
    extract = classify_baseline.extract_with_pyav

    def watched(video, folder):
        extract(video, folder)
        seen.append(sorted((p.name, p.read_bytes()[:2]) for p in Path(folder).iterdir()))

    monkeypatch.setattr(classify_baseline, "extract_with_pyav", watched)
    status = main(["bench", "classify", "--synthetic-dir", str(tmp_path / "generated"), "--videos", "2",
                   "--frames", "10", "--height", "32", "--width", "48", "--n_threads", "0", "--no-warm-up",
                   *TINY_MODEL])
    assert status == 0
    baseline, ours = _lines(capsys)
    assert baseline["extraction"] == "pyav" and baseline["jpeg_files"] == 2 * 10 and baseline["mean_jpeg_bytes"] > 100
    assert baseline["clips"] == ours["clips"] == 2 * 3 and ours["inputs"] == "generated"
    assert len(seen) == 2  # one folder per video, one pass
    assert [name for name, _ in seen[0]] == [f"image_{i:05d}.jpg" for i in range(1, 11)]
    assert {head for folder in seen for _, head in folder} == {b"\xff\xd8"}  # JPEG files
    assert list(scratch.iterdir()) == []  # the frame folders and the run's own folder are gone
    assert len(list((tmp_path / "generated").glob("*.mp4"))) == 2  # the generated videos are kept for reuse


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="no ffmpeg binary on PATH")
def test_with_ffmpeg_the_binary_extracts_as_many_frames(own_videos, capsys):
    status = main(["bench", "classify", str(own_videos / "a.mp4"), "--ffmpeg", "--n_threads", "0", "--no-warm-up",
                   *TINY_MODEL])
    assert status == 0
    baseline, ours = _lines(capsys)
    assert baseline["extraction"] == "ffmpeg" and baseline["jpeg_files"] == FRAMES["a.mp4"]
    assert baseline["clips"] == ours["clips"] == 5 and ours["same_clips"] is True


@pytest.mark.parametrize("problem", ["not a video", "no ffmpeg"])
def test_a_bad_input_is_one_line(problem, own_videos, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 20)
    no_ffmpeg = [str(own_videos), "--ffmpeg", "--ffmpeg-binary", str(tmp_path / "no-ffmpeg")]
    argv = [str(broken)] if problem == "not a video" else no_ffmpeg
    assert main(["bench", "classify", *argv, "--n_threads", "0", *TINY_MODEL]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("resnet3d bench: error: ")
    assert (str(broken) if problem == "not a video" else "no-ffmpeg") in captured.err
