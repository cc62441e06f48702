"""Distributed recognition's shares (the hidden files each process keeps beside the results) across
interruptions, resumes and fresh starts. Two ranks run as two threads (``as_two_ranks``) on real
JPEG folders and a tiny ResNet-10; each test checks the results file a later run ends with."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from predict_helpers import ClipCounter, StopAt, as_two_ranks, recognition_config

from resnet3d.engine.distributed import DistInfo
from resnet3d.engine.predict import run_recognition

pytestmark = pytest.mark.slow

CPU = torch.device("cpu")
WINDOWS = 3  # windows per video of the motion fixture (20 frames, windows of 8)


def _config(motion, folder):
    config = recognition_config(motion, folder)
    return replace(config, inference=replace(config.inference, fold_bn=False))  # (ranks in threads: as_two_ranks)


def _run(config, model, **kwargs):
    return run_recognition(config, model=model, device=CPU, show_progress=False, announce=False, **kwargs)


def _two_ranks(monkeypatch, config, models, folders=None, stop=False, **kwargs):
    """One distributed run of two ranks (rank r with ``models[r]``, its results file in
    ``folders[r]``: machines without a shared file system); ``stop``: each rank is stopped (Ctrl-C)
    at its first batch. Returns each rank's summary or exception."""
    import contextlib

    def work(rank):
        own = config if folders is None else replace(config, run=replace(config.run, result_path=str(folders[rank])))
        with StopAt(models[rank]) if stop else contextlib.nullcontext():
            return _run(own, models[rank], dist=DistInfo(rank=rank, world_size=2), **kwargs)

    return as_two_ranks(monkeypatch, work)


def _other_model():
    from resnet3d.models import create_model

    torch.manual_seed(123)
    return create_model("resnet", 10, n_classes=4).eval()


@pytest.fixture
def one_process(motion, tiny_model, tmp_path):
    """The results file one process writes (what every distributed run must end with)."""
    _run(_config(motion, tmp_path / "one"), tiny_model)
    return json.loads((tmp_path / "one" / "val.json").read_text())


def test_a_second_interruption_keeps_what_the_first_saved(motion, tiny_model, one_process, tmp_path, monkeypatch):
    """Shares of an interrupted run, continued by as many processes: each rank's new share has the
    earlier one's name, and its first save replaced the earlier results with its own. Stopped
    again before that (or a second time at all), the first run's work was lost."""
    import copy

    config = _config(motion, tmp_path)
    models = [copy.deepcopy(tiny_model) for _ in range(2)]
    assert all(isinstance(outcome, dict) for outcome in _two_ranks(monkeypatch, config, models))
    full = json.loads((tmp_path / "val.json").read_text())["results"]
    first, second, *_ = full
    # as if the run had stopped with one video done by each rank
    (tmp_path / "val.json").unlink()
    for rank, video in enumerate((first, second)):
        (tmp_path / f".val.json.rank{rank}of2.json").write_text(json.dumps({"results": {video: full[video]}}))

    stopped = _two_ranks(monkeypatch, config, models, stop=True, resume=True)
    assert all(isinstance(outcome, KeyboardInterrupt) for outcome in stopped), stopped

    with ClipCounter(tiny_model) as counting:
        _run(config, tiny_model, resume=True)
    assert counting.clips == 2 * WINDOWS  # the two saved videos were not recognised again
    assert json.loads((tmp_path / "val.json").read_text()) == one_process


def test_an_interrupted_overwrite_leaves_no_earlier_results_to_resume(motion, tiny_model, tmp_path, monkeypatch):
    """--overwrite with several processes left the earlier results file in place until the merge,
    beside the new run's record of its weights: stopped, and continued with --resume, the earlier
    model's results were taken as the new model's."""
    config = _config(motion, tmp_path)
    _run(config, tiny_model)  # an earlier, finished run
    other = _other_model()
    alone = _run(_config(motion, tmp_path / "alone"), other)
    stopped = _two_ranks(monkeypatch, config, [other, other], stop=True, overwrite=True)
    assert all(isinstance(outcome, KeyboardInterrupt) for outcome in stopped), stopped

    with ClipCounter(other) as counting:
        _run(config, other, resume=True)
    assert counting.clips == 4 * WINDOWS  # nothing of the new model was saved: every video again
    assert (tmp_path / "val.json").read_text() == (tmp_path / "alone" / "val.json").read_text()
    assert alone["videos"] == 4


def test_a_share_of_other_weights_on_another_machine_is_not_continued(motion, tiny_model, one_process, tmp_path,
                                                                      monkeypatch, capsys):
    """Machine 1 kept the share of a run with other weights (that run's rank 0 failed), and machine
    0 then started afresh on its own with these weights: a two-machine --resume took machine 1's
    share, the other model's results, into this model's file."""
    import copy

    folders = [tmp_path / "machine0", tmp_path / "machine1"]
    config = _config(motion, tmp_path)
    other = _other_model()
    models = [other, copy.deepcopy(other)]
    with StopAt(other):  # rank 0 of the other weights' run fails; rank 1's share stays on machine 1
        outcomes = _two_ranks(monkeypatch, config, models, folders=folders)
    assert isinstance(outcomes[0], KeyboardInterrupt) and isinstance(outcomes[1], Exception), outcomes
    stale = list(folders[1].glob(".val.json.rank1of2.json"))
    assert stale and json.loads(stale[0].read_text())["results"]  # what rank 1 had recognised

    alone = replace(config, run=replace(config.run, result_path=str(folders[0])))
    _run(alone, tiny_model, overwrite=True)  # machine 0 alone, these weights, afresh
    path = folders[0] / "val.json"
    done = json.loads(path.read_text())
    for video in json.loads(stale[0].read_text())["results"]:  # as if stopped before these
        del done["results"][video]
    path.write_text(json.dumps(done))
    capsys.readouterr()

    models = [copy.deepcopy(tiny_model) for _ in range(2)]
    outcomes = _two_ranks(monkeypatch, config, models, folders=folders, resume=True)
    assert all(isinstance(outcome, dict) for outcome in outcomes), outcomes
    assert json.loads(path.read_text()) == one_process
    assert not list(folders[1].glob(".val.json.rank*"))
    assert "1 share of a run with other weights or settings" in capsys.readouterr().err


@pytest.mark.parametrize("kept", [3, 4])
def test_ranks_without_videos_to_recognise(motion, tiny_model, one_process, tmp_path, monkeypatch, kept):
    """Resumed with 3 of 4 videos done, rank 1 has none to recognise; with all 4, neither has."""
    import copy

    config = _config(motion, tmp_path)
    done = dict(list(one_process["results"].items())[:kept])
    (tmp_path / "val.json").write_text(json.dumps({"results": done}))
    models = [copy.deepcopy(tiny_model) for _ in range(2)]
    counters = [ClipCounter(model) for model in models]
    outcomes = _two_ranks(monkeypatch, config, models, resume=True)
    assert all(isinstance(outcome, dict) for outcome in outcomes), outcomes
    assert [counter.clips for counter in counters] == [(4 - kept) * WINDOWS, 0]
    assert outcomes[0]["skipped"] == kept and outcomes[0]["videos"] == 4 - kept
    assert json.loads((tmp_path / "val.json").read_text()) == one_process
    assert not list(tmp_path.glob(".val.json.rank*"))


def test_a_stop_while_rank_0_waits_for_the_shares_says_what_is_saved(motion, tiny_model, one_process, tmp_path,
                                                                      monkeypatch):
    """Ctrl-C while rank 0 waits in the gather reaches it once the gather ends (torch's wait does
    not return to Python before): it ended with a bare KeyboardInterrupt ("interrupted", or under
    --nproc-per-node "stopped at once (a second Ctrl-C)"), not the line that says what is saved."""
    import copy

    from resnet3d.engine import predict

    merge = predict.merge_shares

    def stopped_in_the_gather(*args, **kwargs):
        if args[-1]:  # rank 0 (is_main): the signal, taken as the gather ends
            raise KeyboardInterrupt
        return merge(*args, **kwargs)

    monkeypatch.setattr(predict, "merge_shares", stopped_in_the_gather)
    config = _config(motion, tmp_path)
    outcomes = _two_ranks(monkeypatch, config, [copy.deepcopy(tiny_model) for _ in range(2)], resume=True)
    assert isinstance(outcomes[0], KeyboardInterrupt)
    assert str(outcomes[0]) == (f"2 of the 2 videos of rank 0 are saved in the partial files beside "
                                f"{tmp_path / 'val.json'}; continue with --resume")
    monkeypatch.setattr(predict, "merge_shares", merge)
    with ClipCounter(tiny_model) as counting:
        _run(config, tiny_model, resume=True)
    assert counting.clips == 0  # both shares were saved
    assert json.loads((tmp_path / "val.json").read_text()) == one_process


def test_a_process_error_part_way_is_one_line(capsys):
    """What a failing process says at once and sends to the others: a bad input's line (status 2);
    a dead loader worker's cause and fix; any other error's type and message in one line (a loader
    worker's error: its own last line, not "Caught ... in DataLoader worker"), its traceback above."""
    from resnet3d.engine.recognition_state import failure_of
    from resnet3d.errors import UserError

    assert failure_of(UserError("videos/a: no frames"), 1) == ("videos/a: no frames", 2)
    err = capsys.readouterr().err
    assert err == ("resnet3d: error (rank 1): videos/a: no frames; the other processes finish their shares, then "
                   "the run ends (what this one scored is kept)\n")
    full = OSError(28, "No space left on device", "out/.val.json.rank1of2.json")
    assert failure_of(full, 1) == ("out/.val.json.rank1of2.json: No space left on device (the disk is full: free "
                                   "space or choose another path)", 2)
    assert "Traceback" not in capsys.readouterr().err
    text, status = failure_of(RuntimeError("DataLoader worker (pid 77) is killed by signal: Killed. "), 0)
    assert status == 1 and text.startswith("DataLoader worker (pid 77) is killed by signal: Killed: most often")
    assert "Traceback" not in capsys.readouterr().err
    try:
        raise ValueError("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                         "last):\n  File \"x.py\", line 1, in f\nValueError: a bad box")
    except ValueError as error:
        assert failure_of(error, 3) == ("ValueError: a bad box", 1)
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "error (rank 3): ValueError: a bad box;" in err
