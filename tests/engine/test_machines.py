"""Several machines the successor's way: each machine's rank from its launcher, the meeting
address from --dist_url, and a clear line when the machines do not meet."""
import pytest

from resnet3d.engine import distributed
from resnet3d.engine.machines import MachineGroup, launcher_rank, machine_group, rendezvous_address
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
    with pytest.raises(UserError, match="--world_size 2 trains on 2 machines.*mpirun or srun.*torchrun"):
        launcher_rank(2, {})


def test_one_machine_needs_no_group():
    assert machine_group(1, "tcp://node0:1", {}) is None
    group = machine_group(2, "", {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"})
    assert group == MachineGroup(count=2, rank=0, host="127.0.0.1", port=23456)  # the successor's default
    assert MachineGroup(2, 1, "fe80::1", 29500).endpoint == "[fe80::1]:29500"


def _never_runs():  # (the launcher fails before it starts a process)
    raise AssertionError("started")


def test_machines_that_do_not_meet_say_so(monkeypatch):
    """Machine 1 of 2 whose machine 0 never comes: torch's launcher gives up after the timeout
    with a socket error; the run ends with one line that says what to check."""
    monkeypatch.setattr(distributed, "MACHINES_TIMEOUT_S", 2)
    group = MachineGroup(count=2, rank=1, host="127.0.0.1", port=distributed.free_port())
    with pytest.raises(UserError, match=r"machine 1 of 2, meeting at 127\.0\.0\.1:\d+: the machines did not meet "
                                        r"\(.+\); check that --dist_url names the machine of launcher rank 0"):
        distributed.launch_local(1, _never_runs, machines=group)


def test_no_machines_is_refused():
    with pytest.raises(UserError, match=r"\[hardware\] nodes 0: the number of machines is 1 or more"):
        machine_group(0, "", {})
