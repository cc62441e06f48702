"""A real ``resnet3d prepare frames`` process killed with SIGKILL midway, then restarted."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prepare_videos import decoded_frame_count, write_video
from resnet3d.prepare.decode import ResizeRule
from resnet3d.prepare.extract import ExtractOptions
from resnet3d.prepare.frame_folders import image_name
from resnet3d.prepare.frames import prepare_frames

N_VIDEOS = 8
FRAMES = 60  # long enough that the kill lands well before the last video, even on a loaded machine


def finished_folders(frame_dir: Path):
    return [p for p in frame_dir.glob("*/*") if not p.name.startswith(".") and (p / "n_frames").exists()]


@pytest.mark.slow
def test_killed_run_restarts_to_a_complete_result(tmp_path):
    videos = tmp_path / "videos"
    for index in range(N_VIDEOS):
        write_video(videos / ("even" if index % 2 else "odd") / f"v{index}.mp4", n_frames=FRAMES, size=(320, 240))
    frames = tmp_path / "frames"
    command = [sys.executable, "-m", "resnet3d", "prepare", "frames", str(videos), str(frames),
               "--short-side", "0", "--workers", "1", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not finished_folders(frames) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"the run ended before the kill: {process.stderr.read().decode()}"

    # Whatever the kill interrupted, every visible folder is a finished one.
    visible = [p for p in frames.glob("*/*") if not p.name.startswith(".")]
    assert 1 <= len(visible) < N_VIDEOS
    for folder in visible:
        n_frames = int((folder / "n_frames").read_text())
        assert sorted(os.listdir(folder)) == sorted([image_name(i) for i in range(1, n_frames + 1)] + ["fps", "n_frames"])

    summary = prepare_frames(videos, frames, ExtractOptions(rule=ResizeRule(short_side=None)), workers=1, progress=False)
    assert summary.failed == 0
    assert summary.skipped == len(visible) and summary.done == N_VIDEOS - len(visible)
    for video in sorted(videos.rglob("*.mp4")):
        folder = frames / video.parent.name / video.stem
        expected = decoded_frame_count(video)
        assert (folder / "n_frames").read_text() == str(expected)
        assert sorted(os.listdir(folder)) == sorted([image_name(i) for i in range(1, expected + 1)] + ["fps", "n_frames"])
    assert not list(frames.rglob(".*"))  # no leftovers, the lock file included


@pytest.mark.slow
def test_ctrl_c_stops_a_pool_run_with_one_line_and_it_resumes(tmp_path):
    """Ctrl-C reaches the command and its worker pool (one process group). It printed an
    AttributeError traceback from the pool's shutdown; now one line, status 130, no worker left."""
    videos = tmp_path / "videos"
    for index in range(N_VIDEOS):
        write_video(videos / "all" / f"v{index}.mp4", n_frames=FRAMES, size=(320, 240))
    frames = tmp_path / "frames"
    command = [sys.executable, "-m", "resnet3d", "prepare", "frames", str(videos), str(frames),
               "--short-side", "480", "--workers", "2", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while not finished_folders(frames) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    err = err.decode()
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "resnet3d prepare: interrupted" and "Traceback" not in err
    deadline = time.monotonic() + 20  # the workers went with it (reaped within seconds)
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("a process of the interrupted run is still there")

    summary = prepare_frames(videos, frames, ExtractOptions(rule=ResizeRule(short_side=None)), workers=1, progress=False)
    assert summary.failed == 0 and summary.done + summary.skipped == N_VIDEOS


def _starting_worker(pid: int) -> bool:
    """Whether a pool worker of ``pid`` runs Python already (spawned: it imports for a while)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return any(b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes() for child in children)
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads a process's children from /proc")
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.2, 0.3])
def test_ctrl_c_while_a_pool_worker_starts_is_one_line(tmp_path, delay):
    """A spawned worker imports for a second before its initializer takes Ctrl-C over: a Ctrl-C
    then printed its KeyboardInterrupt traceback (and the pool's 'Bad file descriptor'). Workers
    now start with the signals blocked. The signal goes ``delay`` s after a worker's Python began."""
    videos = tmp_path / "videos"
    for index in range(N_VIDEOS):
        write_video(videos / "all" / f"v{index}.mp4", n_frames=FRAMES, size=(320, 240))
    command = [sys.executable, "-m", "resnet3d", "prepare", "frames", str(videos), str(tmp_path / "frames"),
               "--short-side", "480", "--workers", "2", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _starting_worker(process.pid) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    err = err.decode()
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "resnet3d prepare: interrupted" and "Traceback" not in err, err
