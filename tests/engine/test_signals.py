"""Ctrl-C reaches the whole process group: the trainer and its forked loader workers."""
import os
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
