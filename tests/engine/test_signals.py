"""Ctrl-C reaches the whole process group: the trainer and its forked loader workers."""
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

# A trainer stand-in: installs the stop request, forks a worker (as a DataLoader does), and sends
# SIGINT to its own process group, as a terminal's Ctrl-C does.
SCRIPT = textwrap.dedent("""
    import multiprocessing, os, signal, sys, time
    from resnet3d.engine.signals import StopRequest

    def worker(pipe):
        time.sleep(1.0)
        pipe.send("alive")

    stop = StopRequest().install()
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=worker, args=(child_end,))
    child.start()
    time.sleep(0.2)
    os.killpg(os.getpgid(0), signal.SIGINT)
    time.sleep(0.2)
    print("requested", stop.requested, stop.name)
    print("worker", parent_end.recv() if parent_end.poll(5) else "gone")
    child.join()
    print("worker exit", child.exitcode)
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_one_ctrl_c_prints_one_line_and_leaves_the_workers_running():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60,
                          start_new_session=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("SIGINT received") == 1, done.stderr
    assert "requested True SIGINT" in done.stdout
    assert "worker alive" in done.stdout and "worker exit 0" in done.stdout, done.stdout + done.stderr


def test_a_second_sigint_in_the_installing_process_stops_at_once():
    from resnet3d.engine.signals import StopRequest

    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.exit_code == 130
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


# -- a real training run stopped by signals sent the way a terminal or a scheduler sends them --

def _run_until_training(motion_data, result_name, *extra):
    """Start `resnet3d main` in a session of its own (its own process group, like a terminal
    job) and return once two batches were logged."""
    import time

    from engine_helpers import TINY, data_args, subprocess_env

    command = [sys.executable, "-m", "resnet3d", "main", *data_args(motion_data), "--result_path", result_name,
               *TINY, "--n_threads", "1",  # (the last --n_threads counts: a loader worker to be signalled)
               "--batch_size", "4", "--n_epochs", "50", "--no_cuda", *extra]
    # the temporary files of processes these tests kill (a launcher's log folder, a worker's
    # socket folder) stay in the test's folder, not in /tmp
    scratch = motion_data / f"tmp-{result_name}"
    scratch.mkdir(exist_ok=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(subprocess_env(), TMPDIR=str(scratch)), start_new_session=True)
    batch_log = motion_data / result_name / "train_batch.log"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if batch_log.is_file() and len(batch_log.read_text().splitlines()) >= 3:  # header + 2 batches
            return process
        time.sleep(0.02)
    out, err = process.communicate(timeout=60)
    raise AssertionError(f"training did not start:\n{out}\n{err}")


def _assert_saved_and_stopped(motion_data, result_name, process, signum):
    import torch

    out, err = process.communicate(timeout=180)
    assert process.returncode == 128 + signum, out + err
    assert "Traceback" not in err and "killed by signal" not in err, err
    assert err.count(f"{signal.Signals(signum).name} received") == 1, err  # one line, not one per process
    assert f"stopped by {signal.Signals(signum).name}" in err, err
    saved = motion_data / result_name / "model_interrupted.pth"
    assert saved.is_file(), err
    assert torch.load(saved, weights_only=True)["step_in_epoch"] >= 2


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs process groups")
def test_ctrl_c_on_a_two_process_run_saves_and_exits_130(motion_data):
    """The terminal sends SIGINT to the launcher, both training processes and their loader
    workers at once; torch's launcher used to send the workers a second SIGINT (they stopped
    without a checkpoint) and die with its own traceback."""
    process = _run_until_training(motion_data, "ctrl_c_ddp", "--nproc-per-node", "2")
    os.killpg(process.pid, signal.SIGINT)
    _assert_saved_and_stopped(motion_data, "ctrl_c_ddp", process, signal.SIGINT)


@pytest.mark.slow
def test_sigterm_to_the_launcher_alone_reaches_its_training_processes(motion_data):
    """`kill PID` on the launcher: it passes the request on and returns the workers' status."""
    process = _run_until_training(motion_data, "kill_launcher", "--nproc-per-node", "2")
    process.send_signal(signal.SIGTERM)
    _assert_saved_and_stopped(motion_data, "kill_launcher", process, signal.SIGTERM)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs process groups")
def test_sigterm_to_the_whole_group_does_not_kill_the_loader_workers_first(motion_data):
    """Slurm at the time limit signals every process of the job: torch's loader workers died on
    it, and the trainer failed with "DataLoader worker ... killed by signal" instead of saving."""
    process = _run_until_training(motion_data, "slurm_timeout")
    os.killpg(process.pid, signal.SIGTERM)
    _assert_saved_and_stopped(motion_data, "slurm_timeout", process, signal.SIGTERM)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(__import__("resource"), "RLIMIT_FSIZE"), reason="needs a file size limit")
def test_a_checkpoint_that_cannot_be_written_stops_every_process_with_one_message(motion_data):
    """A full disk while saving: rank 0 names the file and the fix, rank 1 does not wait for it in
    its next collective, and the loader workers do not keep the processes from exiting. (A file
    size limit fails the write as a full disk does, without filling one.)"""
    import resource

    from engine_helpers import TINY, data_args, subprocess_env

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = subprocess.run([sys.executable, "-m", "resnet3d", "main", *data_args(motion_data), "--result_path",
                           "disk_full", *TINY, "--n_threads", "2", "--batch_size", "4", "--n_epochs", "2",
                           "--max-steps-per-epoch", "2", "--no_cuda", "--nproc-per-node", "2"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=180,
                          preexec_fn=limit_file_size)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "cannot write" in done.stderr and "File too large" in done.stderr and "--resume auto" in done.stderr
    assert "rank 0 could not write its checkpoint" in done.stderr
    assert not list((motion_data / "disk_full").glob("*.pth")) and not list((motion_data / "disk_full").glob(".*"))


@pytest.mark.slow
def test_a_second_run_into_a_busy_result_folder_is_refused_and_a_killed_run_leaves_no_lock(motion_data):
    """Two runs in one folder would replace each other's checkpoints; the lock dies with its
    holder, even by SIGKILL, so a pre-empted job's retry is never locked out."""
    from engine_helpers import TINY, data_args, resnet3d

    first = _run_until_training(motion_data, "busy")
    second = resnet3d("main", *data_args(motion_data), "--result_path", "busy", *TINY, "--no_cuda",
                      "--resume", "auto", check=False)
    assert second.returncode == 2, second.stdout + second.stderr
    assert "in use by another training run" in second.stderr and f"process {first.pid} on" in second.stderr
    assert "Traceback" not in second.stderr
    first.kill()
    first.wait(timeout=60)  # the trainer alone: its loader worker lives on for a few seconds,
    # and held the lock with it (inherited through the fork), so a retry at once was refused
    resnet3d("main", *data_args(motion_data), "--result_path", "busy", *TINY, "--no_cuda", "--resume", "auto",
             "--n_epochs", "1", "--max-steps-per-epoch", "2")
    first.communicate(timeout=60)
    assert not list((motion_data / "busy").glob(".*lock*"))  # released at the end of the run


def _start_recognition(motion_data, result_name, *extra):
    """`resnet3d main` recognising the 60 training videos with a fresh ResNet-18 at 112x112 (slow
    enough on a CPU to be stopped in the middle); returns once its set-up is written."""
    import time

    from engine_helpers import data_args, subprocess_env

    command = [sys.executable, "-m", "resnet3d", "main", *data_args(motion_data), "--result_path", result_name,
               "--no_train", "--no_val", "--inference", "--inference_subset", "training", "--n_classes", "2",
               "--model_depth", "18", "--sample_size", "112", "--sample_duration", "8", "--n_threads", "1",
               "--inference_batch_size", "2", "--no_cuda", "--manual_seed", "1", *extra]
    # a progress line per scored video (a log file gets one per 10 s: a fast machine printed only
    # the last, 60/60, and the signal came after recognition)
    env = {**subprocess_env(), "RESNET3D_PROGRESS_EVERY": "0"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               start_new_session=True)
    stderr = _Collected(process.stderr)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if re.search(r"recognition training\s+[1-9]/", stderr.text()):  # a video was scored, 51 or more to go
            return command, process, stderr
        time.sleep(0.02)
    raise AssertionError(f"recognition did not start:\n{stderr.text()}")


class _Collected:
    """A pipe read by a thread as it is written (the progress line shows how far a run got)."""

    def __init__(self, pipe) -> None:
        import threading

        self._chunks = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for chunk in iter(lambda: os.read(pipe.fileno(), 65536), b""):
            self._chunks.append(chunk)

    def text(self, wait: bool = False) -> str:
        if wait:
            self._thread.join(timeout=120)
        return b"".join(self._chunks).decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("signum, processes", [(signal.SIGTERM, "1"), (signal.SIGINT, "2"), (signal.SIGTERM, "2")])
def test_recognition_stops_at_the_first_signal_and_keeps_what_it_scored(motion_data, signum, processes):
    """Recognition has no step to finish: the first Ctrl-C or SIGTERM saves the videos scored so
    far and exits (in `main` the first Ctrl-C used to promise a checkpoint and change nothing,
    and SIGTERM killed the loader workers, then the run)."""
    import json

    name = f"recognition_{signal.Signals(signum).name}_{processes}"
    command, process, stderr = _start_recognition(motion_data, name, "--nproc-per-node", processes)
    os.killpg(process.pid, signum)
    process.wait(timeout=120)
    out, err = process.stdout.read().decode(), stderr.text(wait=True)
    if process.returncode == 0:
        pytest.skip("recognition ended before the signal (a very fast machine)")
    assert process.returncode == 128 + signum, out + err
    assert "Traceback" not in err and "killed by signal" not in err, err
    assert "are saved in" in err and "continues from them" in err, err
    assert "finishing the current step" not in err  # no promise of a checkpoint
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    results = json.loads((motion_data / name / "training.json").read_text())["results"]
    assert len(results) == 60


def test_a_run_refused_at_set_up_leaves_no_folders_it_created(motion_data):
    from engine_helpers import TINY, data_args, resnet3d

    done = resnet3d("main", *data_args(motion_data), "--result_path", "new_parent/new_child", *TINY, "--no_cuda",
                    "--precision", "bf16", check=False)  # refused on the CPU, after the lock was taken
    assert done.returncode == 2 and "bf16" in done.stderr, done.stderr
    assert not (motion_data / "new_parent").exists()


def test_the_launcher_takes_sigint_and_sigterm_even_where_torch_sets_its_own_handler():
    """torch 2.4's launcher sets its ``_terminate_process_handler`` for SIGINT, SIGTERM, SIGHUP
    and SIGQUIT whatever TORCHELASTIC_SIGNALS_TO_HANDLE says (later ones read the variable):
    inside ``ForwardToWorkers`` that name is ours for SIGINT and SIGTERM, torch's for the others,
    and torch's again afterwards."""
    import torch.distributed.elastic.multiprocessing.api as elastic

    from resnet3d.engine.signals import ForwardToWorkers

    torchs = elastic._terminate_process_handler
    sent = []
    forward = ForwardToWorkers(lambda: [])
    forward._send = sent.append
    with forward:
        installed = elastic._terminate_process_handler  # what torch's start() installs
        assert installed is not torchs
        installed(signal.SIGINT, None)
        installed(signal.SIGTERM, None)
        assert forward.signals_seen == [signal.SIGINT, signal.SIGTERM] and sent == [signal.SIGTERM]
        with pytest.raises(elastic.SignalException):
            installed(signal.SIGHUP, None)
    assert elastic._terminate_process_handler is torchs


def test_loader_workers_start_with_the_stop_signals_blocked():
    """A spawned worker imports torch for a second or two before its set-up takes the signals
    over; a Ctrl-C to the job meanwhile ended it with a traceback. The block passes through fork
    and exec, and the parent's own mask is as it was afterwards."""
    from resnet3d.engine.signals import children_start_deaf_to_stops

    show = [sys.executable, "-c", "import signal; print(sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))"]
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with children_start_deaf_to_stops():
        inside = subprocess.run(show, capture_output=True, text=True, check=True).stdout
    outside = subprocess.run(show, capture_output=True, text=True, check=True).stdout
    assert {int(signal.SIGINT), int(signal.SIGTERM)} <= set(eval(inside))
    assert not {int(signal.SIGINT), int(signal.SIGTERM)} & set(eval(outside))
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def _process_states():
    """(pid, the fields of /proc/<pid>/stat after the command name) of every process; fields[0] is
    the state, [1] the parent, [3] the session."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    yield int(entry), handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue


def _children(pid: int):
    """The processes ``pid`` started (its loader workers), from /proc."""
    return [child for child, fields in _process_states() if int(fields[1]) == pid]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the loader worker through /proc")
def test_a_loader_worker_killed_mid_epoch_saves_the_steps_and_says_why(motion_data):
    """The out-of-memory killer takes a loader worker: the run ended with torch's 57-line
    traceback and lost the epoch's steps; now one line with the cause and the fix, and the steps
    saved as an interrupted epoch that --resume auto continues."""
    import torch

    from engine_helpers import TINY, data_args, resnet3d

    process = _run_until_training(motion_data, "oom_killed")
    workers = _children(process.pid)
    assert workers, "no loader worker found"
    os.kill(workers[0], signal.SIGKILL)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 1, out + err
    # torch words the death by how it noticed it: its SIGCHLD handler ("is killed by signal:
    # Killed") or the failed read of the worker's queue ("exited unexpectedly"), a matter of timing
    assert "Traceback" not in err and ("killed by signal: Killed" in err or "exited unexpectedly" in err), err
    assert "most often the system's out-of-memory killer" in err and "lower --n_threads" in err, err
    saved = motion_data / "oom_killed" / "model_interrupted.pth"
    assert saved.is_file() and torch.load(saved, weights_only=True)["step_in_epoch"] >= 2, err
    resnet3d("main", *data_args(motion_data), "--result_path", "oom_killed", *TINY, "--batch_size", "4",
             "--n_epochs", "1", "--no_cuda", "--resume", "auto")


def _training_processes(launcher: int):
    """The training processes a launcher started (spawned: ``spawn_main`` in their command line)."""
    found = []
    for child in _children(launcher):
        with open(f"/proc/{child}/cmdline", "rb") as handle:
            if b"spawn_main" in handle.read():
                found.append(child)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the training processes through /proc")
def test_a_training_process_killed_is_said_once_without_the_launchers_traceback(motion_data):
    """The launcher logged the failed rank with a traceback of its own waiting loop (seven
    "E1127 ... Traceback" lines) before our one line."""
    process = _run_until_training(motion_data, "rank_killed", "--nproc-per-node", "2")
    ranks = _training_processes(process.pid)
    assert len(ranks) == 2, ranks
    os.kill(ranks[1], signal.SIGKILL)
    out, err = process.communicate(timeout=120)  # (a loader worker left behind held the pipes open)
    assert process.returncode != 0, out + err
    assert "a training process failed (rank" in err and "Traceback" not in err, err
    assert "Terminating process" not in err, err  # torch's log line of the launcher stopping rank 0
    assert not (motion_data / "rank_killed" / "model_interrupted.pth").exists()
    _assert_session_ends(process.pid)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the launcher's death reaches its processes on Linux")
def test_training_processes_stop_and_save_when_their_launcher_is_killed(motion_data):
    """kill -9 of the launcher alone: its training processes trained on, then waited for ever in
    torch's wrapper for the launcher to read their status (holding their GPU memory)."""
    import time

    import torch

    process = _run_until_training(motion_data, "launcher_killed", "--nproc-per-node", "2")
    ranks = _training_processes(process.pid)
    assert len(ranks) == 2, ranks
    process.kill()
    process.wait(timeout=60)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{rank}") for rank in ranks):
        time.sleep(0.2)
    alive = [rank for rank in ranks if os.path.exists(f"/proc/{rank}")]
    for rank in alive:
        os.kill(rank, signal.SIGKILL)
    assert not alive, "training processes outlived their launcher"
    saved = motion_data / "launcher_killed" / "model_interrupted.pth"
    assert saved.is_file() and torch.load(saved, weights_only=True)["step_in_epoch"] >= 2


def _alive(pid: int) -> bool:
    """Running (a zombie that nobody reaps, as init in some containers leaves them, is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _session(leader: int):
    """The live processes of the session ``leader`` started (its launcher, ranks, loader workers,
    and what they left behind)."""
    return [pid for pid, fields in _process_states() if int(fields[3]) == leader and fields[0] != "Z"]


def _assert_session_ends(leader: int, within: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + within
    while time.monotonic() < deadline and _session(leader):
        time.sleep(0.2)
    left = _session(leader)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes outlived the run: {left}"


# A loader worker stand-in: the trainer that starts it (spawn, as under the launcher, or a fork
# server) dies before or after the worker's set-up; argv: when the parent dies ("before"/"after"),
# a scratch folder, the start method.
ORPHAN_SCRIPT = textwrap.dedent("""
    import multiprocessing, os, sys, time
    from pathlib import Path

    def dead(pid):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    def worker(when, scratch):
        from resnet3d.engine.signals import leave_stopping_to_the_parent
        (scratch / "pid").write_text(str(os.getpid()))
        if when == "before":
            while not dead(multiprocessing.parent_process().pid):
                time.sleep(0.05)  # the parent dies now
        leave_stopping_to_the_parent()
        (scratch / "set up").touch()
        time.sleep(60)
        (scratch / "survived").touch()

    if __name__ == "__main__":
        when, scratch, method = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
        child = multiprocessing.get_context(method).Process(target=worker, args=(when, scratch))
        child.start()
        wanted = scratch / ("pid" if when == "before" else "set up")
        while not wanted.exists():
            time.sleep(0.05)
        os._exit(0)
""")


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="watches the worker through /proc")
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_loader_worker_ends_when_its_trainer_dies(tmp_path, when, method):
    """A rank killed while it started a loader worker left that worker waiting for batches for
    ever (torch's worker took init, its new parent, for its trainer), holding the run's output
    pipes: the launcher had exited, and a script reading its output waited 60 s and more."""
    import time

    from engine_helpers import subprocess_env

    script = tmp_path / "trainer.py"  # (spawn imports the parent's main module: a file, not -c)
    script.write_text(ORPHAN_SCRIPT)
    # (TMPDIR: the fork server's socket folder, which a trainer that dies leaves behind)
    subprocess.run([sys.executable, str(script), when, str(tmp_path), method], timeout=120, check=True,
                   env=dict(subprocess_env(), TMPDIR=str(tmp_path)))
    worker = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _alive(worker):
        time.sleep(0.1)
    if _alive(worker):
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the worker outlived its trainer")
    assert (tmp_path / "set up").exists() == (when == "after")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the loader workers through /proc")
def test_a_loader_worker_killed_on_one_rank_ends_the_run_at_once(motion_data):
    """An error of one rank alone (its loader worker killed): that rank said it and returned, and
    the other waited for it in its next collective (and it for the launcher) for ever."""
    process = _run_until_training(motion_data, "worker_killed_ddp", "--nproc-per-node", "2", "--n_threads", "2")
    ranks = _training_processes(process.pid)
    assert len(ranks) == 2, ranks
    workers = _children(max(ranks))
    assert workers, "no loader worker found"
    os.kill(workers[0], signal.SIGKILL)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, out + err
    assert "Traceback" not in err and "py_callstack" not in err, err
    assert err.count("resnet3d: error (rank 1): DataLoader worker") == 1, err
    assert "a training process failed" not in err, err  # (said once, by the rank)
    assert not (motion_data / "worker_killed_ddp" / "model_interrupted.pth").exists()
    _assert_session_ends(process.pid)


@pytest.mark.slow
def test_an_error_every_rank_finds_is_said_once_under_torchrun(motion_data, tmp_path):
    """Each rank printed the same error, and the two lines ran together ("...of 2resnet3d: error")."""
    from engine_helpers import TINY, data_args, subprocess_env

    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "resnet3d",
                           "main", *data_args(motion_data), "--result_path", "odd_batch", *TINY, "--no_cuda",
                           "--batch_size", "5"],
                          capture_output=True, text=True, timeout=120, env=dict(subprocess_env(), TMPDIR=str(tmp_path)))
    assert done.returncode != 0
    assert done.stderr.count("must split evenly") == 1, done.stderr
    assert any(line.startswith("resnet3d: error: --batch_size 5 is the global batch")
               for line in done.stderr.splitlines()), done.stderr


FORK_SERVER_LOADER = textwrap.dedent("""
    import torch
    from resnet3d.data.loader import init_loader_worker

    if __name__ == "__main__":
        loader = torch.utils.data.DataLoader(range(4), batch_size=2, num_workers=1, worker_init_fn=init_loader_worker,
                                             multiprocessing_context="forkserver")
        print([batch.tolist() for batch in loader])
""")


@pytest.mark.skipif(sys.platform != "linux", reason="the fork server start method as Linux's Python 3.14 default")
def test_a_loader_worker_started_by_a_fork_server_serves_its_batches(tmp_path):
    """Under the forkserver start method (Python 3.14's default on Linux) a loader worker's OS
    parent is the fork server, not the trainer that asked for it: the check for a trainer that died
    while its worker started took that for a dead trainer, and every worker exited at its set-up."""
    from engine_helpers import subprocess_env

    script = tmp_path / "loader.py"
    script.write_text(FORK_SERVER_LOADER)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env=dict(subprocess_env(), TMPDIR=str(tmp_path)))  # (the fork server's socket folder)
    assert done.returncode == 0 and done.stdout.strip() == "[[0, 1], [2, 3]]", done.stdout + done.stderr
