"""``resnet3d bench prepare`` prints JSON lines; without ffmpeg the baseline says why it is missing."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from prepare_videos import write_video


def bench(*args):
    done = subprocess.run([sys.executable, "-m", "resnet3d", "bench", "prepare", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.slow
def test_bench_without_ffmpeg_reports_the_baseline_unavailable(tmp_path):
    write_video(tmp_path / "v" / "a.mp4", n_frames=5, size=(64, 48))
    baseline, ours = bench(tmp_path / "v", "--ffmpeg", "no-such-ffmpeg-binary")
    assert baseline["baseline"] is True and baseline["available"] is False
    assert "no 'no-such-ffmpeg-binary' binary on PATH" in baseline["reason"]
    assert ours["baseline"] is False and ours["frames"] == 5 and ours["frames_per_s_per_core"] > 0
    assert "speedup_per_core" not in ours


@pytest.mark.slow
def test_a_video_the_baselines_ffmpeg_cannot_read_is_named_with_its_reason(tmp_path):
    """ffmpeg's whole stderr (banner, build flags, stream list) was pasted into the error."""
    write_video(tmp_path / "v" / "a.mp4", n_frames=5, size=(64, 48))
    fake = tmp_path / "ffmpeg"  # an ffmpeg that fails as it does on a damaged file
    fake.write_text("#!/bin/sh\necho 'ffmpeg version 5.1 Copyright (c) 2000-2022 the FFmpeg developers' >&2\n"
                    "echo '  configuration: --enable-gpl --enable-libx264 --enable-many-more' >&2\n"
                    "echo \"$5: moov atom not found\" >&2\nexit 1\n")
    fake.chmod(0o755)
    done = subprocess.run([sys.executable, "-m", "resnet3d", "bench", "prepare", str(tmp_path / "v"),
                           "--ffmpeg", str(fake)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "a.mp4: moov atom not found" in done.stderr and "move this one out" in done.stderr
    assert "configuration" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg for the baseline")
def test_bench_against_ffmpeg(tmp_path):
    write_video(tmp_path / "v" / "a.mp4", n_frames=6, size=(96, 64))
    baseline, ours = bench(tmp_path / "v")
    assert baseline["available"] is True and baseline["frames"] == 6
    assert ours["frames"] == 6 and ours["same_frame_size"] is True and ours["same_frame_count"] is True
    assert ours["speedup_per_core"] > 0 and 1 <= ours["quality"] <= 100
    assert ours["baseline_mean_jpeg_bytes"] == baseline["mean_jpeg_bytes"]
