"""Several machines the successor's way: each machine's rank from its launcher, the meeting
address from --dist_url, and a clear line when the machines do not meet."""
import os
import re
import subprocess
import sys

import pytest

from resnet3d.engine.machines import MachineGroup, launcher_rank, machine_group, rendezvous_address, unbind_from_launcher
from resnet3d.errors import UserError


@pytest.mark.parametrize("url, expected", [
    ("tcp://node0:23456", ("node0", 23456)),
    ("tcp://10.1.2.3:29500", ("10.1.2.3", 29500)),
    ("tcp://[fe80::1]:29500", ("fe80::1", 29500)),
    (" tcp://node0:1 ", ("node0", 1)),
])
def test_a_tcp_dist_url_names_the_meeting_place(url, expected):
    assert rendezvous_address(url, {}) == expected


def test_env_dist_url_reads_master_addr_and_port():
    assert rendezvous_address("env://", {"MASTER_ADDR": "node7", "MASTER_PORT": "29400"}) == ("node7", 29400)
    with pytest.raises(UserError, match="MASTER_ADDR and MASTER_PORT, which are not both set"):
        rendezvous_address("env://", {"MASTER_ADDR": "node7"})


@pytest.mark.parametrize("url", ["node0:23456", "tcp://node0", "tcp://node0:port", "file:///tmp/x", "tcp://:23456",
                                 "tcp://node0:99999"])
def test_a_dist_url_that_names_no_address_is_refused(url):
    with pytest.raises(UserError, match=r"expected tcp://HOST:PORT .*or env://"):
        rendezvous_address(url, {})


@pytest.mark.parametrize("environ, rank", [
    ({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"}, 1),  # Open MPI: the successor's
    ({"PMI_RANK": "0", "PMI_SIZE": "2"}, 0),                           # MPICH, Intel MPI
    ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, 1),                   # srun
    ({"OMPI_COMM_WORLD_RANK": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, 1),  # mpirun inside a Slurm job
])
def test_each_machine_takes_its_rank_from_its_launcher(environ, rank):
    assert launcher_rank(2, environ) == rank


def test_a_launcher_that_started_a_process_per_core_is_refused():
    with pytest.raises(UserError, match=r"mpirun's? started 16 processes|started 16 processes .*one process per machine"):
        launcher_rank(2, {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "16"})


def test_a_rank_beyond_the_world_size_is_refused():
    with pytest.raises(UserError, match="PMI_RANK=2 .*ranks run from 0 to 1"):
        launcher_rank(2, {"PMI_RANK": "2"})


def test_no_launcher_says_what_to_start_it_with():
    with pytest.raises(UserError, match="--world_size / --nodes 2 trains on 2 machines.*mpirun or srun.*torchrun"):
        launcher_rank(2, {})


def test_one_machine_needs_no_group():
    assert machine_group(1, "tcp://node0:1", {}) is None
    group = machine_group(2, "", {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"})
    assert group == MachineGroup(count=2, rank=0, host="127.0.0.1", port=23456)  # the successor's default
    assert MachineGroup(2, 1, "fe80::1", 29500).endpoint == "[fe80::1]:29500"


def _never_runs():  # (the launcher fails before it starts a process)
    raise AssertionError("started")


def test_machines_that_do_not_meet_say_so_in_one_line(tmp_path):
    """Machine 1 of 2 whose machine 0 never comes, a host that does not resolve, and machine 0
    whose port is taken: one line each, before torch's launcher (whose own failure printed about
    40 lines of C++ stack first). Run in a fresh interpreter to see everything it prints."""
    script = tmp_path / "meet.py"
    script.write_text(
        "import socket\n"
        "from resnet3d.engine import distributed\n"
        "from resnet3d.engine.machines import MachineGroup\n"
        "distributed.MACHINES_TIMEOUT_S = 2\n"
        "taken = socket.socket(); taken.bind(('0.0.0.0', 0)); taken.listen()\n"
        "groups = [MachineGroup(2, 1, '127.0.0.1', distributed.free_port()),\n"
        "          MachineGroup(2, 1, 'no-such-host.invalid', 23456),\n"
        "          MachineGroup(2, 0, '127.0.0.1', taken.getsockname()[1])]\n"
        "for group in groups:\n"
        "    try:\n"
        "        distributed.launch_local(1, print, machines=group)\n"
        "    except Exception as error:\n"
        "        print(type(error).__name__, error)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert done.stderr == "" and len(lines) == 3, done.stdout + done.stderr
    assert re.match(r"UserError machine 1 of 2, meeting at 127\.0\.0\.1:\d+: nothing listened at .* for 2 s: check "
                    r"that --dist_url names the machine of launcher rank 0", lines[0])
    assert lines[1].startswith("UserError machine 1 of 2, meeting at no-such-host.invalid:23456: cannot resolve")
    assert re.match(r"UserError machine 0 of 2, meeting at 127\.0\.0\.1:\d+: port \d+ cannot be used on this machine "
                    r"\(Address already in use\)", lines[2])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs 2 usable cores")
def test_a_process_bound_to_one_core_is_widened():
    """mpirun binds each process to one core: the machine's training processes and loader
    workers would share it. The process started bound (as mpirun starts it) widens itself."""
    usable = os.sched_getaffinity(0)
    done = subprocess.run(
        [sys.executable, "-c", "import os; from resnet3d.engine.machines import unbind_from_launcher; "
                               "print(unbind_from_launcher()); print(len(os.sched_getaffinity(0)))"],
        capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(usable)}))  # (a core this container has)
    note, cores = done.stdout.splitlines()
    assert note.startswith("the launcher bound this process to 1 core(s): widened to") and int(cores) > 1, done.stderr
    assert unbind_from_launcher() is None  # an unbound process is left as it is


def test_no_machines_is_refused():
    with pytest.raises(UserError, match=r"--world_size / --nodes \(\[hardware\] nodes\) 0: the number of machines is 1 or more"):
        machine_group(0, "", {})


def test_a_batch_per_machine_that_does_not_split_names_what_to_type(monkeypatch, tmp_path, capsys):
    """--batch_size 6 per machine on 2 machines of 4 processes: the error speaks of the 6 typed
    (and of the 4 processes it must split among), not only of the global 12."""
    from resnet3d import cli

    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert cli.main(["main", "--video_path", str(tmp_path), "--annotation_path", str(tmp_path / "a.json"),
                     "--result_path", str(tmp_path / "run"), "--no_cuda", "--nproc-per-node", "4",
                     "--batch_size", "6", "--distributed", "--world_size", "2",
                     "--dist_url", "tcp://127.0.0.1:23456"]) == 2
    err = capsys.readouterr().err
    assert ("a global batch of 12 gives each of the 2 machines 6 clips, which must split evenly among its 4 "
            "processes: use a batch per machine that is a multiple of 4") in err
