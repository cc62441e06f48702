"""On a CPU device, recognition and classify share the cores between the model's threads and the
decoding (``scoring.CpuThreadSplit``), and classify decodes the next clips in a thread of its own
(``classify.ahead.made_ahead``). Neither changes a result; the threads a process had are given
back."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from predict_helpers import DURATION, SIZE, recognition_config

from resnet3d.classify import ClassifyOptions, classify_video
from resnet3d.classify.ahead import made_ahead
from resnet3d.engine.scoring import CpuThreadSplit


@pytest.fixture
def four_threads():
    """torch with 4 intra-op threads for the test, then as it was."""
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


def _settled(split: CpuThreadSplit, model_s: float, decode_s: float, batches: int = 3) -> int:
    for _ in range(batches):
        split.on_decoded(decode_s, 4)
        split.on_batch(model_s, 4)
    assert torch.get_num_threads() == split.threads
    return split.threads


def _decided(model_s: float, decode_s: float, **split_args) -> int:
    """The threads a fresh split settles on; torch's count given back after."""
    split = CpuThreadSplit(torch.device("cpu"), **split_args)
    try:
        return _settled(split, model_s, decode_s)
    finally:
        split.restore()


def test_the_model_gets_the_cores_decoding_leaves(four_threads):
    cpu = torch.device("cpu")
    # starts on one thread while it learns the costs
    split = CpuThreadSplit(cpu, workers=2, cores=2)
    assert split.active and torch.get_num_threads() == 1
    # decoding costs as much as the model: one core each
    assert _settled(split, model_s=0.4, decode_s=0.4) == 1 and torch.get_num_threads() == 1
    split.restore()
    assert torch.get_num_threads() == 4
    # a model ten times its decoding gets both cores
    assert _decided(1.0, 0.1, workers=2, cores=2) == 2
    # the cores are those torch had threads for (OMP_NUM_THREADS, a distributed run's share): 4 here
    assert _decided(0.4, 0.4, workers=2, cores=8) == 2
    # decoding uses at most one core per worker: 8 cores, 2 workers, equal costs -> 6 for the model
    torch.set_num_threads(8)
    assert _decided(0.4, 0.4, workers=2, cores=8) == 6
    assert _decided(0.4, 0.4, workers=8, cores=8) == 4  # enough workers: half the cores each
    assert torch.get_num_threads() == 8
    torch.set_num_threads(4)
    # decided once, after the settling batches: later costs change nothing
    split = CpuThreadSplit(cpu, workers=2, cores=2, settle_batches=1)
    assert _settled(split, model_s=1.0, decode_s=0.0, batches=1) == 2
    assert _settled(split, model_s=0.1, decode_s=10.0) == 2 and not split.settling
    split.restore()
    # no workers (decoding between batches, in this process) or a GPU: nothing changes
    torch.set_num_threads(4)
    for idle in (CpuThreadSplit(cpu, workers=0, cores=2), CpuThreadSplit(torch.device("cuda"), workers=2, cores=2)):
        assert not idle.active and not idle.settling and torch.get_num_threads() == 4
        idle.on_batch(1.0, 4)
        idle.restore()
        assert idle.threads == 4 and torch.get_num_threads() == 4


def _scores(path: str) -> dict:
    return json.loads(Path(path).read_text())["results"]


def test_recognition_with_workers_sets_the_models_threads_and_agrees_with_no_workers(motion, tiny_model, tmp_path,
                                                                                     four_threads):
    """Two worker processes decode real JPEG folders and report what each chunk cost; the model's
    threads are set after three batches and given back at the end; the scores are those of a run
    that decodes in this process."""
    from resnet3d.engine.predict import run_recognition
    from resnet3d.engine.windows import ViewPlan, WindowDataset, group_units
    from resnet3d.data.dataset import resolve_videos

    runs = {}
    for workers in (0, 2):
        config = recognition_config(motion, tmp_path / f"w{workers}", workers=workers, batch_size=4)
        runs[workers] = run_recognition(config, model=tiny_model, device=torch.device("cpu"), show_progress=False,
                                        announce=False)
        assert torch.get_num_threads() == 4  # given back
    assert runs[0]["model_threads"] == 4  # no workers: as it was
    from resnet3d.hardware import usable_cores

    assert 1 <= runs[2]["model_threads"] <= min(4, usable_cores())
    assert runs[2]["model_calls"] >= 3  # the split was decided within the run
    plain, split = _scores(runs[0]["output"]), _scores(runs[2]["output"])
    assert list(plain) == list(split) and len(plain) == 4
    for video, entries in plain.items():
        assert [e["label"] for e in entries] == [e["label"] for e in split[video]]
        assert np.allclose([e["score"] for e in entries], [e["score"] for e in split[video]], atol=1e-5)

    # each chunk says what it cost its worker
    videos, _, _ = resolve_videos(config.data, "val")
    units = group_units(videos, {v.key: v.key for v in videos})
    chunks = list(WindowDataset(videos, units, config.data, ViewPlan(DURATION, SIZE)))
    assert chunks and all(chunk["decode_s"] >= 0 and len(chunk["rows"]) for chunk in chunks)


def test_made_ahead_keeps_order_raises_where_the_error_came_and_stops_with_its_caller():
    def numbers(upto, fail_at=None, closed=None):
        try:
            for n in range(upto):
                if n == fail_at:
                    raise ValueError(f"no {n}")
                yield n
        finally:
            if closed is not None:
                closed.append(True)

    assert list(made_ahead(numbers(20))) == list(range(20))
    got = []
    with pytest.raises(ValueError, match="no 3"):
        for n in made_ahead(numbers(10, fail_at=3)):
            got.append(n)
    assert got == [0, 1, 2]
    # the caller stops early: the thread ends and the source is closed (a video file is let go)
    before = threading.active_count()
    closed = []
    stop = threading.Event()
    items = made_ahead(numbers(1000, closed=closed), depth=2, stop=stop)
    assert next(items) == 0
    items.close()
    assert closed == [True] and threading.active_count() == before
    assert stop.is_set()  # what the maker of a long item watches (clip_batches, below)


def test_a_stopped_batch_of_clips_ends_at_the_next_clip(motion, monkeypatch):
    """Ctrl-C waited for the decoding thread to finish the whole batch under way: seconds for a
    large --batch-size on a large video. Decoding a real MP4, the batch ends at the clip after
    the stop."""
    import resnet3d.classify as classify

    video = str(sorted(Path(motion.video_path).rglob("*.mp4"))[0])
    real = classify.video_clips
    stop = threading.Event()
    pulled, closed = [], []

    def stopping_after_three(*args, **kwargs):
        try:
            for item in real(*args, **kwargs):
                pulled.append(item[0])
                yield item
                if len(pulled) == 3:
                    stop.set()  # as made_ahead does when its caller is interrupted
        finally:
            closed.append(True)

    monkeypatch.setattr(classify, "video_clips", stopping_after_three)
    options = ClassifyOptions(sample_size=SIZE, sample_duration=2, batch_size=100)  # 10 clips, one batch
    assert list(classify.clip_batches(video, options, [], stop)) == []
    assert pulled == [(1, 2), (3, 4), (5, 6), (7, 8)] and closed == [True]
    # not stopped: every clip, in one batch
    [(batch, segments)] = classify.clip_batches(video, options, [], threading.Event())
    assert len(batch) == 10 and segments[-1] == [19, 20]


def test_sigterm_while_the_thread_decodes_keeps_the_finished_videos(motion, our_checkpoint, tmp_path, monkeypatch,
                                                                    capsys, four_threads):
    """SIGTERM killed classify outright: a .json output, written at the end, lost every finished
    video. Now it stops as Ctrl-C does (exit 143), with the finished videos saved, torch's threads
    given back and the decoding thread gone, without a traceback from it."""
    import os
    import signal

    import resnet3d.classify as classify
    from resnet3d.cli import main

    videos = sorted(str(p) for p in Path(motion.video_path).rglob("*.mp4"))[:3]
    real = classify.video_clips

    def terminated_in_the_second_video(path, *args, **kwargs):
        for n, item in enumerate(real(path, *args, **kwargs)):
            yield item
            if path == videos[1] and n == 0:  # sent from the decoding thread, as any moment may be
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(classify, "video_clips", terminated_in_the_second_video)
    out = tmp_path / "labels.json"
    status = main(["classify", *videos, "--model", str(our_checkpoint), "--output", str(out), "--no_cuda",
                   "--batch-size", "1"])
    assert status == 128 + signal.SIGTERM
    records = json.loads(out.read_text())
    assert [r["video"] for r in records] == videos[:1] and len(records[0]["clips"]) == 3
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err and "Exception in thread" not in err
    assert torch.get_num_threads() == 4
    assert not [t for t in threading.enumerate() if t.name == "resnet3d-classify-decode"]


def test_classify_decoding_ahead_gives_the_records_of_decoding_in_turn(motion, tiny_model, monkeypatch, four_threads):
    """On MP4s encoded by PyAV: the clips decoded in a thread of their own, the model's threads set
    from the first batch, give the records that decoding and scoring in turn gave."""
    import resnet3d.classify as classify
    from resnet3d.classify.clips import FFMPEG_THREADS
    from resnet3d.data import DeviceTransform
    from resnet3d.engine.predict import Scorer, prepare_model
    from resnet3d.normalization import KINETICS

    device = torch.device("cpu")
    scorer = Scorer(prepare_model(tiny_model, device, channels_last=True), DeviceTransform(KINETICS, train=False),
                    device)
    options = ClassifyOptions(sample_size=SIZE, sample_duration=4, stride=2, batch_size=3)
    videos = sorted(str(p) for p in Path(motion.video_path).rglob("*.mp4"))[:2]
    assert videos
    split = CpuThreadSplit(device, workers=FFMPEG_THREADS, settle_batches=1)
    ahead = [classify_video(v, v, scorer, None, options, split) for v in videos]
    split.restore()
    assert torch.get_num_threads() == 4 and not split.settling
    monkeypatch.setattr(classify, "made_ahead", lambda items, **_: items)
    in_turn = [classify_video(v, v, scorer, None, options) for v in videos]
    for a, b in zip(ahead, in_turn):
        assert "error" not in a and len(a["clips"]) > 3  # several batches per video
        assert [c["segment"] for c in a["clips"]] == [c["segment"] for c in b["clips"]]
        assert [c["label"] for c in a["clips"]] == [c["label"] for c in b["clips"]]
        assert np.allclose([c["scores"] for c in a["clips"]], [c["scores"] for c in b["clips"]], atol=1e-5)


def test_classify_gives_torch_its_threads_back_when_the_output_cannot_be_opened(motion, our_checkpoint, tmp_path,
                                                                               four_threads):
    """The model's threads were set to one (``CpuThreadSplit``) before the .jsonl output was
    opened, outside the block that gives them back: a failed open left the calling process on one
    thread."""
    from resnet3d.cli import main

    video = sorted(Path(motion.video_path).rglob("*.mp4"))[0]
    output = tmp_path / "out.jsonl"
    output.symlink_to(tmp_path / "gone" / "out.jsonl")  # passes the checks; open() then fails, even as root
    assert main(["classify", str(video), "--model", str(our_checkpoint), "--output", str(output), "--no_cuda"]) != 0
    assert torch.get_num_threads() == 4

