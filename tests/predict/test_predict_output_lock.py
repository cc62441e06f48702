"""One recognition run per results file (``run_lock.ResultsLock``): a second run on the same file
(the same command started twice, a second job) is refused, naming the first, and leaves its files
as they are; the lock goes with the run however it ends; what a killed save left is removed.

A first run is held still where it holds the lock: a ``resnet3d test`` process whose first
video's result waits for a line on its stdin (``_paused_run``), so that nothing depends on timing."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from resnet3d.cli import main

# ``resnet3d test`` that stops at its ``pause_at``-th video's result (its argv[1]) until a line
# comes on stdin, after saying "paused" on stdout
_PAUSED = """
import sys
from resnet3d.cli import main
from resnet3d.engine import share_scoring

real, pause_at, calls = share_scoring.result_entry, int(sys.argv[1]), []

def paused(*args, **kwargs):
    calls.append(1)
    if len(calls) == pause_at:
        print("paused", flush=True)
        sys.stdin.readline()
    return real(*args, **kwargs)

share_scoring.result_entry = paused
sys.exit(main(sys.argv[2:]))
"""


def _flags(motion, checkpoint, output):
    return ["--weights", str(checkpoint), "--video-path", motion.jpg_path, "--annotation-path",
            motion.annotation_path, "--subset", "val", "--output", str(output), "--n-threads", "0", "--quiet",
            "--no-cuda"]


def _env(folder):
    return dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(folder))


def _paused_run(motion, checkpoint, output, pause_at=2):
    """A ``resnet3d test`` process held at its ``pause_at``-th video (with --save-every 1, the
    videos before it are saved); returns once it is there."""
    first = subprocess.Popen([sys.executable, "-c", _PAUSED, str(pause_at), "test",
                              *_flags(motion, checkpoint, output), "--save-every", "1"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env(output.parent))
    line = first.stdout.readline()
    if line.strip() != "paused":
        first.kill()
        out, err = first.communicate()
        raise AssertionError(f"the first run did not get to its pause:\n{line}{out}{err}")
    return first


def _second(motion, checkpoint, output, *extra):
    return subprocess.run([sys.executable, "-m", "resnet3d", "test", *_flags(motion, checkpoint, output), *extra],
                          capture_output=True, text=True, timeout=300, env=_env(output.parent))


def _files(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def _assert_refused(done, output, first):
    both = done.stdout + done.stderr
    assert done.returncode == 2, both
    assert len(re.findall(r"resnet3d( test)?: error", both)) == 1, both  # (several processes: "error (rank 0)")
    assert (f"{output} is in use by another recognition run (process {first.pid} on {socket.gethostname()}, "
            in done.stderr), both
    assert "wait for it to finish (or stop it), or choose another --output or --result_path" in done.stderr, both
    assert "Traceback" not in both, both


@pytest.mark.slow
def test_a_second_run_on_the_same_results_file_is_refused_and_leaves_the_first_alone(motion, our_checkpoint,
                                                                                    tmp_path):
    """The second run (--overwrite: it would have removed the first's results at once) is refused
    in one line; another results file in the same folder is fine; once the first has finished, the
    next run on its file goes ahead."""
    output = tmp_path / "val.json"
    first = _paused_run(motion, our_checkpoint, output)
    try:
        before = _files(tmp_path)
        assert len(json.loads(before["val.json"])["results"]) == 1  # the first's first video, saved
        _assert_refused(_second(motion, our_checkpoint, output, "--overwrite"), output, first)
        assert _files(tmp_path) == before

        other = _second(motion, our_checkpoint, tmp_path / "other.json")
        assert other.returncode == 0, other.stdout + other.stderr
        assert len(json.loads((tmp_path / "other.json").read_text())["results"]) == 4
    finally:
        out, err = first.communicate("\n", timeout=300)
    assert first.returncode == 0, out + err
    assert len(json.loads(output.read_text())["results"]) == 4
    assert not (tmp_path / ".val.json.lock").exists()
    after = _second(motion, our_checkpoint, output, "--resume")  # the lock went with the first run
    assert after.returncode == 0 and "4 videos already have results" in after.stderr, after.stdout + after.stderr


@pytest.mark.slow
def test_a_locked_results_file_ends_both_processes_of_nproc_per_node_2(motion, our_checkpoint, tmp_path):
    """Rank 0 alone takes the lock: refused, it ends rank 1 too, one line and status 2, no
    traceback. The first run, stopped by Ctrl-C, keeps what it saved and leaves no lock."""
    output = tmp_path / "val.json"
    first = _paused_run(motion, our_checkpoint, output)
    try:
        before = _files(tmp_path)
        _assert_refused(_second(motion, our_checkpoint, output, "--nproc-per-node", "2"), output, first)
        assert _files(tmp_path) == before
    finally:
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=300)
    assert first.returncode == 130, out + err
    assert f"1 of 4 videos are saved in {output}; continue with --resume" in err, err
    after = _second(motion, our_checkpoint, output, "--resume")
    assert after.returncode == 0, after.stdout + after.stderr
    assert len(json.loads(output.read_text())["results"]) == 4


def test_what_a_killed_save_left_is_removed_and_said(motion, our_checkpoint, tmp_path, capsys):
    """The temporary files of the results file, its record and its shares (``fileio.atomic_open``:
    ``.<name>.<8 characters>.tmp``) go, in one line; other files' stay."""
    output = tmp_path / "val.json"
    left = [".val.json.k2x_9q0a.tmp", "..val.json.state.json.abcdefgh.tmp", "..val.json.rank1of2.json.zz11yy22.tmp"]
    others = [".other.json.k2x_9q0a.tmp", ".val.json.1.json.k2x_9q0a.tmp", ".val.json.mine.tmp", "val.json.k2x_9q0a.tmp",
              ".val.json.k2x_9q0a.tmp.keep"]
    for name in left + others:
        (tmp_path / name).write_text("{")
    assert main(["test", *_flags(motion, our_checkpoint, output)]) == 0
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "removed what a killed save left" in line]
    assert len(said) == 1 and said[0].startswith(f"resnet3d: removed what a killed save left of {output}: "), err
    assert all(f"{name} (0.0 KiB)" in said[0] for name in left), said
    assert sorted(path.name for path in tmp_path.iterdir() if path.name in left + others) == sorted(others)
    assert len(json.loads(output.read_text())["results"]) == 4


@pytest.mark.parametrize("ending, status", [("normal", 0), ("error", 2), ("ctrl-c", 130)])
def test_the_lock_is_held_while_recognising_and_released_however_the_run_ends(motion, our_checkpoint, tmp_path,
                                                                              capsys, monkeypatch, ending, status):
    from resnet3d.engine import share_scoring
    from resnet3d.engine.run_lock import ResultsLock
    from resnet3d.errors import UserError

    output = tmp_path / "val.json"
    real = share_scoring.result_entry
    refusals = []

    def ending_at_the_first(*args, **kwargs):
        if not refusals:
            probe = ResultsLock(output)  # a second run's attempt, made here (flock: per open file)
            try:
                probe.acquire()
            except UserError as refused:
                refusals.append(str(refused))
            else:
                probe.release()
                refusals.append(None)
            if ending == "error":
                raise UserError(f"cannot write {output}: No space left on device")
            if ending == "ctrl-c":
                raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(share_scoring, "result_entry", ending_at_the_first)
    assert main(["test", *_flags(motion, our_checkpoint, output)]) == status
    assert refusals and refusals[0] and f"{output} is in use by another recognition run" in refusals[0], refusals
    assert not (tmp_path / ".val.json.lock").exists()
    monkeypatch.setattr(share_scoring, "result_entry", real)
    capsys.readouterr()
    assert main(["test", *_flags(motion, our_checkpoint, output), "--resume"]) == 0, capsys.readouterr().err
    assert len(json.loads(output.read_text())["results"]) == 4


def test_resnet3d_main_recognising_into_a_locked_results_file_is_refused(motion, our_checkpoint, tmp_path, capsys):
    """``resnet3d main --no_train --inference`` takes the same lock (held here by another run's
    lock on the same file, made in this process: flock is per open file)."""
    from predict_helpers import DURATION, SIZE

    from resnet3d.engine.run_lock import ResultsLock

    holder = ResultsLock(tmp_path / "val.json")
    holder.acquire()
    try:
        status = main(["main", "--video_path", motion.jpg_path, "--annotation_path", motion.annotation_path,
                       "--result_path", str(tmp_path), "--no_train", "--no_val", "--sample_size", str(SIZE),
                       "--sample_duration", str(DURATION), "--n_threads", "0", "--batch_size", "4", "--no_cuda",
                       "--inference", "--inference_subset", "val", "--resume_path", str(our_checkpoint)])
    finally:
        holder.release()
    err = capsys.readouterr().err
    assert status == 2, err
    assert f"{tmp_path / 'val.json'} is in use by another recognition run (process {os.getpid()} on" in err, err
    assert not (tmp_path / "val.json").exists() and "Traceback" not in err
