"""``resnet3d test`` in several processes: ``--nproc-per-node K`` (gloo on the CPU here, one per
GPU on CUDA) and torchrun's processes share the videos, and rank 0 writes the one results file,
the same file a single process writes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from machines_helpers import FAILURE_TEXT, failing_rank, two_machines, two_machines_ended

pytestmark = pytest.mark.slow


def _test(motion, checkpoint, output, *launcher, extra=(), status=0, env=None):
    """``resnet3d test`` in a fresh interpreter (one intra-op thread: the processes share 2 cores);
    (the results, None unless ``status`` is 0) and the finished process. Its exit status must be ``status``."""
    import os

    command = [*launcher, "resnet3d", "test"] if launcher else [sys.executable, "-m", "resnet3d", "test"]
    done = subprocess.run(
        [*command, "--weights", str(checkpoint), "--video-path", motion.jpg_path,
         "--annotation-path", motion.annotation_path, "--subset", "training", "--output", str(output),
         "--workers", "2", "--batch-size", "4", "--no-cuda", *extra],
        capture_output=True, text=True, timeout=300,
        # one intra-op thread; a progress line per video, counting this rank's share ("2/2")
        # (and torchrun's torchelastic_* folder in the test's own temporary folder, not in /tmp)
        env=dict(os.environ, OMP_NUM_THREADS="1", RESNET3D_PROGRESS_EVERY="0", TMPDIR=str(output.parent),
                 **(env or {})))
    assert done.returncode == status, done.stdout + done.stderr
    return (json.loads(output.read_text()) if status == 0 else None), done


def _same_results(got, want):
    assert list(got["results"]) == list(want["results"])  # every video once, in the annotation's order
    # and the same file to the last digit: on the CPU, with one intra-op thread per process, a
    # window's scores do not depend on the batch it was scored in
    assert got == want


def test_two_processes_write_what_one_writes(motion, our_checkpoint, tmp_path):
    one, _ = _test(motion, our_checkpoint, tmp_path / "one.json")
    two, done = _test(motion, our_checkpoint, tmp_path / "two.json", extra=["--nproc-per-node", "2"])
    _same_results(two, one)
    assert len(one["results"]) == 4
    assert done.stdout.count("recognised 4 videos") == 1  # rank 0 speaks for the run
    assert "2/2" in done.stderr and "4/4" not in done.stderr  # ... and scored half of the videos
    assert not list(tmp_path.glob(".two.json.rank*"))  # the ranks' shares, merged, are gone


def test_a_missing_frame_folder_is_said_once(motion, our_checkpoint, tmp_path):
    """Every process resolved the annotation's videos and said the same warning: two lines with two
    processes. The first process of the machine says it (``messages.data_warnings_per_machine``)."""
    annotation = json.loads(open(motion.annotation_path).read())
    entry = next(e for e in annotation["database"].values() if e["subset"] == "training")
    annotation["database"]["no_frames_here"] = dict(entry)
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(annotation))
    extra = ["--annotation-path", str(path)]  # (the last one given counts)
    one, alone = _test(motion, our_checkpoint, tmp_path / "one.json", extra=extra)
    two, done = _test(motion, our_checkpoint, tmp_path / "two.json", extra=[*extra, "--nproc-per-node", "2"])
    _same_results(two, one)
    assert len(one["results"]) == 4
    warning = "no frame folder under"
    assert alone.stderr.count(warning) == 1
    assert done.stderr.count(warning) == 1, done.stderr
    assert "no_frames_here" in done.stderr


def test_torchrun_processes_share_the_videos(motion, our_checkpoint, tmp_path):
    one, _ = _test(motion, our_checkpoint, tmp_path / "one.json")
    both, done = _test(motion, our_checkpoint, tmp_path / "torchrun.json",
                       sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m")
    _same_results(both, one)
    assert done.stdout.count("recognised 4 videos") == 1  # one run of two processes, not two runs
    assert "2/2" in done.stderr and "4/4" not in done.stderr  # rank 0 scored half of the videos


def test_no_processes_is_refused(motion, our_checkpoint, tmp_path, capsys):
    from resnet3d.cli import main

    assert main(["test", "--weights", str(our_checkpoint), "--video-path", motion.jpg_path, "--annotation-path",
                 motion.annotation_path, "--no-cuda", "--nproc-per-node", "0", "--output", str(tmp_path / "x.json")]) == 2
    assert "--nproc-per-node must be >= 1 (got 0)" in capsys.readouterr().err


def _two_machines(motion, checkpoint, tmp_path, *extra, machine1=(), check=True, env=None):
    """``resnet3d test`` on two torchrun "machines" on this one, each in a folder of its own
    (machine0, machine1) with a relative ``--output``: each keeps its share where the other cannot
    see it, as on machines without a shared file system. ``machine1``: flags for machine 1 alone.
    Returns each machine's (stdout, stderr) (``check`` False: and exit status, failures allowed)."""
    import os

    from resnet3d.engine.distributed import free_port

    port = str(free_port())
    folders = [tmp_path / f"machine{node}" for node in (0, 1)]
    for folder in folders:
        folder.mkdir(exist_ok=True)
    # TMPDIR: torchrun's folders in the test's; not the machines' own folders, whose longer path
    # made the loader worker's socket path (TMPDIR/pymp-*/listener-*) pass the 108-byte limit
    env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path), **(env or {}))
    run = two_machines if check else two_machines_ended
    return run(
        [[sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
          "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", port,
          "-m", "resnet3d", "test", "--weights", str(checkpoint), "--video-path", motion.jpg_path,
          "--annotation-path", motion.annotation_path, "--subset", "training", "--output", "results.json",
          "--workers", "1", "--batch-size", "4", "--no-cuda", *extra, *(machine1 if node else ())]
         for node in (0, 1)], [env, env], folders, timeout=300 if check else 60)


def _shares(folder):
    return list(folder.glob(".results.json.rank*"))


def test_machines_without_a_shared_file_system(motion, our_checkpoint, tmp_path):
    """The shares travel over the process group: machine 0 ends with the whole results file,
    machine 1 keeps nothing."""
    one, _ = _test(motion, our_checkpoint, tmp_path / "one.json")
    _two_machines(motion, our_checkpoint, tmp_path)
    _same_results(json.loads((tmp_path / "machine0" / "results.json").read_text()), one)
    assert not (tmp_path / "machine1" / "results.json").exists()
    for node in (0, 1):  # the shares, merged, are gone on both machines
        assert not _shares(tmp_path / f"machine{node}"), node


def test_resuming_takes_the_shares_other_machines_saved(motion, our_checkpoint, tmp_path):
    """A stopped run left a share on machine 1, where rank 0 cannot see it: --resume takes its
    results (not recognised again: the share's made-up label stays), and a run that starts afresh
    removes it there."""
    _two_machines(motion, our_checkpoint, tmp_path)
    results = tmp_path / "machine0" / "results.json"
    done = json.loads(results.read_text())
    video = next(iter(done["results"]))
    del done["results"][video]
    results.write_text(json.dumps(done))
    saved = {"results": {video: [{"label": "from machine 1", "score": 1.0}]}, "errors": {}, "complete": False}
    share = tmp_path / "machine1" / ".results.json.rank1of2.json"
    share.write_text(json.dumps(saved))

    (_, machine0_stderr), _ = _two_machines(motion, our_checkpoint, tmp_path, "--resume")
    assert "1 more videos have results in the shares other machines saved" in machine0_stderr
    resumed = json.loads(results.read_text())["results"]
    assert resumed[video] == saved["results"][video] and len(resumed) == 4
    assert not _shares(tmp_path / "machine1")

    share.write_text(json.dumps(saved))  # again, and a run that starts afresh
    _two_machines(motion, our_checkpoint, tmp_path, "--overwrite")
    assert json.loads(results.read_text())["results"][video] != saved["results"][video]
    assert not _shares(tmp_path / "machine1")


def test_a_temporary_folder_too_long_for_the_workers_is_one_line(motion, our_checkpoint, tmp_path):
    """TMPDIR past what the loader workers' socket path allows: before, the run waited for ever for
    the first batch; now it stops at once, naming the folder and the fix."""
    import os

    folder = tmp_path / ("t" * max(1, 80 - len(str(tmp_path))))
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "resnet3d", "test", "--weights", str(our_checkpoint), "--video-path", motion.jpg_path,
         "--annotation-path", motion.annotation_path, "--subset", "training", "--output", str(tmp_path / "r.json"),
         "--workers", "1", "--no-cuda"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, TMPDIR=str(folder)))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"the temporary folder {folder} is too long for the loader workers" in done.stderr
    assert "Traceback" not in done.stderr


def _tracebacks(output):
    """The tracebacks in a launcher's ``output`` but torchrun's own: the report (``ChildFailedError``)
    that it prints with a traceback of its own code whenever one of its processes ends with a
    status other than 0."""
    return [text for text in output.split("Traceback (most recent call last):")[1:]
            if "raise ChildFailedError(" not in text]


_NOT_JSON = "{not json"
_FOREIGN = json.dumps({"results": {"someone_elses_video": [{"label": "x", "score": 1.0}]}})


@pytest.mark.parametrize("share, said", [
    (None, "none of the 4 training videos of"),
    (_NOT_JSON, ".results.json.rank1of2.json: not valid JSON"),
    (_FOREIGN, "--resume: 1 of the 1 results in results.json are of videos this subset does not hold"),
], ids=["without the videos", "a damaged share", "a share of other videos"])
def test_a_start_up_error_of_one_machine_is_said_on_both(motion, our_checkpoint, tmp_path, share, said):
    """Machine 1 alone fails as recognition starts, after the processes joined their groups: it
    lacks the videos, or --resume finds a share there that it cannot continue. Machine 0 printed
    gloo's "Connection closed by peer" with a traceback and ended with status 1 (so did machine 1
    when machine 0 found the foreign share); now every process ends with status 2, and each
    machine's first process says rank 1's error in one line. An earlier results file on machine 0
    stays as it was: no file changes before every process's checks passed. (The group the shares
    travel over is opened before any of this: rank 0 waited there for a machine without the
    videos, up to that group's week-long timeout.)"""
    empty = tmp_path / "empty"
    empty.mkdir()
    earlier = tmp_path / "machine0" / "results.json"
    if share is None:
        earlier.parent.mkdir()
        earlier.write_text(json.dumps({"results": {}}))
        flags, machine1 = [], ["--video-path", str(empty)]
    else:
        (tmp_path / "machine1").mkdir()
        (tmp_path / "machine1" / ".results.json.rank1of2.json").write_text(share)
        flags, machine1 = ["--resume"], []
    ended = _two_machines(motion, our_checkpoint, tmp_path, *flags, machine1=machine1, check=False)
    for node, (out, err, status) in enumerate(ended):
        both = out + err
        assert status != 0 and "exitcode  : 2 " in err, f"machine {node}:\n{both}"  # (torchrun's report)
        assert both.count(f"resnet3d: error (rank 1): {said}") == 1, f"machine {node}:\n{both}"
        assert not _tracebacks(both), f"machine {node}:\n{both}"
    if share is None:
        assert json.loads(earlier.read_text()) == {"results": {}} and not list(earlier.parent.glob("results.*.json"))


def test_a_machine_without_the_weights_is_said_on_both(motion, our_checkpoint, tmp_path):
    """Machine 1 lacks the weights (a checkpoint on machine 0's disk): it said so and ended before
    the processes met, and machine 0 waited for it in the process group's start-up (torch's 30
    minutes). The weights now load after the processes meet, as every other check: both machines
    end at once with status 2 and rank 1's line."""
    missing = tmp_path / "nothere.pth"
    ended = _two_machines(motion, our_checkpoint, tmp_path, machine1=["--weights", str(missing)], check=False)
    for node, (out, err, status) in enumerate(ended):
        both = out + err
        assert status != 0 and "exitcode  : 2 " in err, f"machine {node}:\n{both}"  # (torchrun's report)
        assert both.count(f"resnet3d: error (rank 1): {missing}: no such file") == 1, f"machine {node}:\n{both}"
        assert not _tracebacks(both), f"machine {node}:\n{both}"


@pytest.mark.parametrize("where", ["every process", "rank 0"])
def test_a_start_up_error_under_nproc_per_node_is_said_once(motion, our_checkpoint, tmp_path, where):
    """``--nproc-per-node 2``: an error every process meets as recognition starts (no videos under
    --video-path) was said by each, in a line per rank; now once, as training says it. An error of
    rank 0 alone (--resume finds a damaged results file, which only rank 0 reads): one line naming
    it, status 2, and no traceback of the process that waited for it; our launcher gave that
    before too (the failing process's own line; the other's gloo error stayed in torch's error
    file), and now the processes agree instead, which must not say it twice."""
    output = tmp_path / "results.json"
    if where == "rank 0":
        output.write_text(_NOT_JSON)
        flags, said = ["--resume"], f"resnet3d: error (rank 0): {output}: not valid JSON"
    else:
        (tmp_path / "empty").mkdir()
        flags, said = ["--video-path", str(tmp_path / "empty")], "resnet3d: error: none of the 4 training videos"
    _, done = _test(motion, our_checkpoint, output, extra=["--nproc-per-node", "2", *flags], status=2)
    assert done.stderr.count("resnet3d: error") == 1 and said in done.stderr, done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def _failing_rank(tmp_path, rank, at):
    """The environment that makes rank ``rank``'s model fail at its ``at``-th batch."""
    return failing_rank(tmp_path, "resnet3d.engine.scoring:Scorer.submit", rank, at)


def test_a_process_that_fails_part_way_lets_the_others_finish(motion, our_checkpoint, tmp_path):
    """Rank 1's model fails at its first batch, after the processes started recognising: it said
    its error and ended, and rank 0, at the gather, printed gloo's "Connection closed by peer"
    with a traceback. Now rank 1 says its error at once and waits; rank 0 finishes its share,
    which goes into the results file; every process ends with status 1 and one closing line says
    what the file holds and how to continue, which --resume then does."""
    one, _ = _test(motion, our_checkpoint, tmp_path / "one.json")
    output = tmp_path / "two.json"
    _, done = _test(motion, our_checkpoint, output, extra=["--nproc-per-node", "2"], status=1,
                    env=_failing_rank(tmp_path, 1, 1))
    said = done.stdout + done.stderr
    assert said.count(f"resnet3d: error (rank 1): {FAILURE_TEXT}") == 2, said
    assert "the other processes finish their shares" in said  # said at once, by rank 1
    assert "recognition ended by the error above: 2 of the 4 videos have results in" in said
    assert "continue with --resume" in said
    assert said.count("Traceback") == 1 and "in failing" in said  # rank 1's own, for a bug report
    assert "Connection closed" not in said
    kept = json.loads(output.read_text())["results"]
    assert kept == {video: one["results"][video] for video in kept} and len(kept) == 2
    assert not list(tmp_path.glob(".two.json.rank*"))  # the shares are in the results file
    resumed, _ = _test(motion, our_checkpoint, output, extra=["--nproc-per-node", "2", "--resume"])
    _same_results(resumed, one)


def test_a_machine_that_fails_part_way_is_said_on_both(motion, our_checkpoint, tmp_path):
    """The same on two torchrun machines: machine 0 (rank 0) finishes and writes its share into its
    results file, and says machine 1's error too, where it printed a gloo traceback."""
    ended = _two_machines(motion, our_checkpoint, tmp_path, check=False, env=_failing_rank(tmp_path, 1, 1))
    for node, (out, err, status) in enumerate(ended):
        both = out + err
        assert "exitcode  : 1 " in err, f"machine {node}:\n{both}"  # (torchrun's report)
        assert f"resnet3d: error (rank 1): {FAILURE_TEXT}" in both, both
        assert "recognition ended by the error above: 2 of the 4 videos have results in results.json" in both
        assert "Connection closed" not in both
    assert len(json.loads((tmp_path / "machine0" / "results.json").read_text())["results"]) == 2
