"""DDP on the CPU (gloo): two processes give the same run as one process with the same global batch.

BatchNorm would make that comparison loose (each process normalises with its own half-batch
statistics), so these runs use --freeze-bn: then every clip's output depends on that clip
alone, and a 2-process run must match the 1-process run up to float rounding. A wrong shard
(clips seen twice or never), gradients summed instead of averaged, metrics not reduced across
processes, or a clip flipped or jittered differently on another process (the draws travel with
the item: docs/data.md) all show up as differences far above the tolerance.
"""
import json
import shutil
import subprocess
import sys

import pytest

from engine_helpers import TINY, data_args, resnet3d, subprocess_env
from machines_helpers import FAILURE_TEXT, failing_rank, two_machines
from resnet3d.engine.distributed import free_port
from resnet3d.engine.logs import read_log

pytestmark = pytest.mark.slow

# The random flip and colour jitter on (the motion classes need --no_hflip to learn, not to be
# compared). A small learning rate: at 0.05 the jittered run's float rounding (the gradient
# all-reduce sums in another order) grows from 1e-7 to 1e-4 within six steps.
AUGMENTED = [flag for flag in TINY if flag != "--no_hflip"] + ["--colorjitter"]
RUN = [*AUGMENTED, "--batch_size", "8", "--max-steps-per-epoch", "3", "--n_epochs", "2", "--checkpoint", "1",
       "--learning_rate", "0.005", "--freeze-bn", "--no_cuda", "--manual_seed", "3"]


# the successor's several machines: --batch_size per machine, 4 on each of 2 is RUN's 8
PER_MACHINE = [*RUN[:RUN.index("--batch_size")], "--batch_size", "4", *RUN[RUN.index("--batch_size") + 2:]]


def _numbers(result_path):
    logs = {}
    for name in ("train.log", "train_batch.log", "val.log"):
        logs[name] = [{k: float(v) for k, v in row.items()} for row in read_log(result_path / name)]
    return logs


def _assert_same_run(got, want):
    for name in want:
        assert len(got[name]) == len(want[name]), name  # one writer: no duplicated rows
        for row_got, row_want in zip(got[name], want[name]):
            for key, value in row_want.items():
                assert row_got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (name, row_got, row_want)


@pytest.fixture(scope="module")
def one_process(motion_data):
    resnet3d("main", *data_args(motion_data), "--result_path", "ddp_reference", *RUN)
    return _numbers(motion_data / "ddp_reference")


def test_two_processes_match_one(motion_data, one_process, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # (the run's own temporary folders land here)
    done = resnet3d("main", *data_args(motion_data), "--result_path", "ddp_two", *RUN, "--nproc-per-node", "2")
    assert done.stdout.count("epoch 2/2") == 1  # only rank 0 reports
    # torch's launcher left a torchelastic_* folder in /tmp after every run
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(("torchelastic_", "resnet3d-launch-"))]
    _assert_same_run(_numbers(motion_data / "ddp_two"), one_process)
    # the loss moved: the comparison is not between two untrained models
    assert one_process["train_batch.log"][0]["loss"] != one_process["train_batch.log"][-1]["loss"]


def test_two_torchrun_nodes_on_localhost(motion_data, one_process, tmp_path):
    """The multi-node path: two torchrun launchers, one per 'machine', meeting at node 0."""
    port = free_port()
    env = dict(subprocess_env(), TMPDIR=str(tmp_path))  # (torchrun leaves a torchelastic_* folder per run)
    outputs = two_machines(
        [[sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
          "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
          "-m", "resnet3d", "main", *data_args(motion_data), "--result_path", "ddp_nodes", *RUN]
         for rank in (0, 1)], [env, env])
    assert "epoch 2/2" in outputs[0][0] and "epoch 2/2" not in outputs[1][0]
    _assert_same_run(_numbers(motion_data / "ddp_nodes"), one_process)


def test_a_process_that_fails_mid_training_under_torchrun(motion_data, tmp_path):
    """Rank 1's step fails (a GPU out of memory, say): rank 0's next collective printed gloo's
    "Connection closed by peer" inside a traceback of torch's internals. Now rank 0 says one line
    that points at the other process and how to continue; rank 1's own error keeps its traceback."""
    env = dict(subprocess_env(), TMPDIR=str(tmp_path), **failing_rank(tmp_path, "resnet3d.engine.loop:train_step", 1, 2))
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "resnet3d", "main",
         *data_args(motion_data), "--result_path", str(tmp_path / "run"), *RUN],
        capture_output=True, text=True, timeout=300, env=env)
    said = done.stdout + done.stderr
    assert done.returncode != 0 and FAILURE_TEXT in said, said
    line = "resnet3d main: error (rank 0): another process of the run ended, so this one stopped"
    assert said.count(line) == 1 and "--resume auto continues from the last checkpoint written" in said, said
    assert "Connection closed" not in said and "[rank0]: Traceback" not in said, said


def test_a_process_that_fails_mid_training_under_our_launcher_shows_its_traceback(motion_data, tmp_path):
    """--nproc-per-node: an error that is no bad input (a bug) was one line naming rank 1 and the
    error, and its traceback (in torch's error file, removed with the launch) was lost for a bug
    report. Now the process says both itself, once: the launcher's view depended on which process
    it saw end first, and when rank 0's collective failed first (as rank 1's group closed), the
    launcher said rank 0's gloo error with its traceback, and not rank 1's at all (seen in CI)."""
    env = dict(subprocess_env(), TMPDIR=str(tmp_path), **failing_rank(tmp_path, "resnet3d.engine.loop:train_step", 1, 2))
    done = subprocess.run(
        [sys.executable, "-m", "resnet3d", "main", *data_args(motion_data), "--result_path", str(tmp_path / "run"),
         *RUN, "--nproc-per-node", "2"], capture_output=True, text=True, timeout=300, env=env)
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert said.count("Traceback (most recent call last):") == 1 and "in failing" in said, said
    assert said.count(f"resnet3d: error (rank 1): {FAILURE_TEXT}") == 1, said
    assert "Connection closed" not in said, said
    # torch's process starter left a pytorch-errorfile-*.pickle per failed process in the temporary folder
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith("pytorch-errorfile-")]


def test_an_error_every_process_meets_is_said_once_under_our_launcher(motion_data, tmp_path):
    """--nproc-per-node 2, every GPU out of memory at the second step: each process said the same
    long line. Now the first says it, and the launcher adds that the other met it too."""
    env = dict(subprocess_env(), TMPDIR=str(tmp_path),
               **failing_rank(tmp_path, "resnet3d.engine.loop:train_step", None, 2, oom=True))
    done = subprocess.run(
        [sys.executable, "-m", "resnet3d", "main", *data_args(motion_data), "--result_path", str(tmp_path / "run"),
         *RUN, "--nproc-per-node", "2"], capture_output=True, text=True, timeout=300, env=env)
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert said.count("the GPU ran out of memory at batches of 4 clips of 8x32x32 per process") == 1, said
    first = "0" if "resnet3d: error (rank 0): the GPU ran out of memory" in said else "1"
    assert f"resnet3d: rank {1 - int(first)} met the same error as rank {first} (said above, once)" in said, said
    assert "Traceback" not in said, said


def test_the_successors_machines_under_mpirun(motion_data, one_process, tmp_path):
    """The successor's several machines: mpirun starts ``main --distributed --world_size 2
    --dist_url tcp://HOST:PORT`` once per machine, each reading its rank from OMPI_COMM_WORLD_RANK
    (set here as mpirun sets it), and --batch_size is per machine: 4 on each of 2 machines is the
    one-process run's batch of 8."""
    port = free_port()
    command = [sys.executable, "-m", "resnet3d", "main", *data_args(motion_data), "--result_path", "ddp_mpi",
               *PER_MACHINE, "--distributed", "--world_size", "2", "--dist_url", f"tcp://127.0.0.1:{port}"]
    envs = [dict(subprocess_env(), TMPDIR=str(tmp_path), OMPI_COMM_WORLD_RANK=str(rank), OMPI_COMM_WORLD_SIZE="2")
            for rank in (0, 1)]
    outputs = two_machines([command, command], envs)
    assert "epoch 2/2" in outputs[0][0] and "epoch 2/2" not in outputs[1][0]  # only rank 0 reports
    assert "machine 1 of 2" in outputs[1][1] and "global batch of 8" in outputs[0][0] + outputs[0][1]
    _assert_same_run(_numbers(motion_data / "ddp_mpi"), one_process)


def _open_mpi():
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        return None
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    return mpirun if "Open MPI" in version else None


@pytest.mark.skipif(_open_mpi() is None, reason="Open MPI's mpirun is not installed (apt-get install openmpi-bin)")
def test_the_successors_machines_under_a_real_mpirun(motion_data, one_process, tmp_path):
    """The same, started by Open MPI itself: its rank variables are the ones the run reads."""
    port = free_port()
    done = subprocess.run(
        [_open_mpi(), "--allow-run-as-root", "--oversubscribe", "-np", "2", sys.executable, "-m", "resnet3d", "main",
         *data_args(motion_data), "--result_path", "ddp_open_mpi", *PER_MACHINE, "--distributed",
         "--world_size", "2", "--dist_url", f"tcp://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=300, env=dict(subprocess_env(), TMPDIR=str(tmp_path)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "machine 0 of 2" in done.stderr and "machine 1 of 2" in done.stderr
    _assert_same_run(_numbers(motion_data / "ddp_open_mpi"), one_process)


def _uneven_annotation(motion_data, path):
    """11 training and 5 validation videos: neither divides among 2 processes, and batches of 4
    leave a last training batch of 3 clips (2 + 1 on two processes, the second padded)."""
    annotation = json.loads((motion_data / "data" / "annotation.json").read_text())
    kept, left = {}, {"training": 11, "validation": 5}
    for key, entry in annotation["database"].items():
        if left.get(entry["subset"], 0):
            left[entry["subset"]] -= 1
            kept[key] = entry
    annotation["database"] = kept
    path.write_text(json.dumps(annotation))
    return path


def test_an_uneven_epoch_counts_each_clip_once(motion_data, tmp_path):
    """The training sampler repeats a clip so that both processes take as many steps: that repeat
    weighed twice in the last step's gradient and counted twice in the loss and accuracy (its
    train_batch.log row said 4 clips where the epoch had 3 left). Validation, unpadded, must count
    its 5 videos once as well."""
    annotation = _uneven_annotation(motion_data, tmp_path / "uneven.json")
    run = [*RUN[:RUN.index("--batch_size")], "--batch_size", "4", "--n_epochs", "2", "--checkpoint", "1",
           "--learning_rate", "0.05", "--freeze-bn", "--no_cuda", "--manual_seed", "3"]
    for name, extra in (("uneven_one", []), ("uneven_two", ["--nproc-per-node", "2"])):
        resnet3d("main", *data_args(motion_data), "--annotation_path", annotation, "--result_path", tmp_path / name,
                 *run, *extra)
    one, two = _numbers(tmp_path / "uneven_one"), _numbers(tmp_path / "uneven_two")
    assert [row["batch"] for row in one["train_batch.log"]] == [1, 2, 3, 1, 2, 3]
    _assert_same_run(two, one)
    # the last step's accuracy is a count over its 3 clips (k/3), not over 4
    last = one["train_batch.log"][2]["acc"] * 3
    assert last == pytest.approx(round(last))
    for log, clips in (("train.log", 11), ("val.log", 5)):
        for row in two[log]:
            assert row["acc"] * clips == pytest.approx(round(row["acc"] * clips)), (log, row)
