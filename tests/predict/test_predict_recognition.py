"""Per-video recognition end to end on generated JPEG folders and MP4s with a tiny ResNet-10."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from predict_helpers import DURATION, ClipCounter, as_two_ranks, recognition_config

from resnet3d.errors import UserError
from resnet3d.engine.predict import run_recognition
from resnet3d.engine.results import youtube_id

CPU = torch.device("cpu")


def _val(motion):
    return [v for v in motion.videos if v["subset"] == "validation"]


def _run(config, model, **kwargs):
    kwargs.setdefault("show_progress", False)
    kwargs.setdefault("announce", False)
    return run_recognition(config, model=model, device=CPU, **kwargs)  # class names: the annotation's


def test_seed_output_format_names_and_softmax_average(motion, tiny_model, tmp_path):
    summary = _run(recognition_config(motion, tmp_path, flavour="seed", top_k=10), tiny_model)
    path = tmp_path / "val_video.json"
    assert summary["output"] == str(path)
    doc = json.loads(path.read_text())
    assert list(doc) == ["version", "results", "external_data"]
    assert doc["version"] == "VERSION 1.3" and doc["external_data"] == {"used": False, "details": "..."}
    assert set(doc["results"]) == {youtube_id(v["key"]) for v in _val(motion)}
    for entries in doc["results"].values():
        assert [sorted(e) for e in entries] == [["label", "score"]] * 4  # top 10 of 4 classes: all 4
        scores = [e["score"] for e in entries]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-5)  # a mean of softmax probabilities
    # 20 frames, d = 8: the seed's windows start at frames 1 and 9 only
    assert summary["videos"] == 4 and summary["model_calls"] == 2  # 8 windows in batches of 4


@pytest.mark.slow
def test_successor_scores_equal_a_plain_per_video_computation(motion, tiny_model, tmp_path):
    """Batches filled across videos must give each video exactly its own windows' mean."""
    from resnet3d.data import DeviceTransform, build_dataset

    config = recognition_config(motion, tmp_path, flavour="successor", top_k=4, batch_size=3)
    summary = _run(config, tiny_model)
    doc = json.loads(Path(summary["output"]).read_text())
    assert list(doc) == ["results"]
    dataset = build_dataset(config.data, "validation", sampling="sliding", stride=DURATION)
    transform = DeviceTransform(config.data.input_norm, train=False)
    sums, counts = {}, {}
    with torch.inference_mode():
        for item in (dataset[i] for i in range(len(dataset))):
            key = dataset.videos[item["video"]].key
            probs = torch.softmax(tiny_model(transform(item["clip"][None])), dim=1)[0].double()
            sums[key] = sums.get(key, 0) + probs
            counts[key] = counts.get(key, 0) + 1
    assert set(doc["results"]) == set(sums)
    for key, entries in doc["results"].items():
        expected = (sums[key] / counts[key]).tolist()
        assert counts[key] == 3  # windows at frames 1, 9, 17 (the last loop-padded)
        for entry in entries:
            assert entry["score"] == pytest.approx(expected[motion.class_names.index(entry["label"])], abs=1e-5)
    assert summary["model_calls"] == 4  # 12 windows of 4 videos in batches of 3, not one video per batch


def test_no_average_lists_segments_per_window(motion, tiny_model, tmp_path):
    config = recognition_config(motion, tmp_path, average=False, top_k=2)
    doc = json.loads(Path(_run(config, tiny_model)["output"]).read_text())
    for windows in doc["results"].values():
        assert [w["segment"] for w in windows] == [[1, 9], [9, 17], [17, 21]]
        assert all(len(w["result"]) == 2 and sorted(w["result"][0]) == ["label", "score"] for w in windows)


def test_multi_view_clips_times_crops_from_mp4s(motion, tiny_model, tmp_path):
    config = recognition_config(motion, tmp_path, file_type="video", average=False, batch_size=8)
    with ClipCounter(tiny_model) as counting:
        _run(config, tiny_model, n_clips=2, n_crops=3)
    assert counting.clips == 4 * 2 * 3
    doc = json.loads((tmp_path / "val.json").read_text())
    for windows in doc["results"].values():
        assert [w["segment"] for w in windows] == [[1, 9], [13, 21]]  # 2 windows spread over 20 frames


def test_nocrop_feeds_whole_frames(motion, tiny_model, tmp_path):
    with ClipCounter(tiny_model) as counting:
        _run(recognition_config(motion, tmp_path, crop="nocrop"), tiny_model)
    assert {shape[-2:] for shape in counting.shapes} == {(32, 48)}  # short side 32, the 2:3 frame kept whole


@pytest.mark.parametrize("crop, fixed", [("center", True), ("nocrop", False)])
def test_recognition_asks_cudnn_to_autotune_only_clips_of_one_shape(motion, tiny_model, tmp_path, monkeypatch,
                                                                     crop, fixed):
    asked = []
    monkeypatch.setattr("resnet3d.engine.predict.autotune_convolutions",
                        lambda device, fixed_shapes: asked.append((device.type, fixed_shapes)))
    _run(recognition_config(motion, tmp_path, crop=crop), tiny_model)
    assert asked == [("cpu", fixed)]


@pytest.mark.parametrize("device, deterministic, fixed, benchmark", [
    ("cuda", False, True, True),     # centred clips on a GPU: cuDNN times its algorithms once per shape
    ("cuda", False, False, False),   # nocrop: a shape per frame size, each timed for seconds
    ("cuda", True, True, False),     # a run that asked for deterministic kernels keeps them
    ("cpu", False, True, False),     # nothing to tune
])
def test_autotune_convolutions_sets_cudnn_benchmark_only_where_it_pays(monkeypatch, device, deterministic, fixed,
                                                                       benchmark):
    from resnet3d.engine.scoring import autotune_convolutions

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", deterministic)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    autotune_convolutions(torch.device(device), fixed_shapes=fixed)  # a device name: no GPU needed
    assert torch.backends.cudnn.benchmark is benchmark


@pytest.mark.slow
def test_resume_scores_only_the_missing_videos(motion, tiny_model, tmp_path):
    config = recognition_config(motion, tmp_path)
    _run(config, tiny_model)
    path = tmp_path / "val.json"
    full = json.loads(path.read_text())["results"]
    kept = dict(list(full.items())[:2])
    path.write_text(json.dumps({"results": kept}))  # as if the run had stopped after 2 videos
    with ClipCounter(tiny_model) as counting:
        summary = _run(config, tiny_model, resume=True)
    assert summary["skipped"] == 2 and summary["videos"] == 2
    assert counting.clips == 2 * 3  # only the two missing videos' windows were run
    again = json.loads(path.read_text())["results"]
    assert set(again) == set(full)
    for key in kept:
        assert again[key] == kept[key]  # untouched
    # and a finished output resumes to nothing at all
    with ClipCounter(tiny_model) as counting:
        _run(config, tiny_model, resume=True)
    assert counting.clips == 0


def test_resume_refuses_a_file_of_other_videos(motion, tiny_model, tmp_path):
    """--resume on another data set's results kept them as if they were this run's."""
    config = recognition_config(motion, tmp_path)
    path = tmp_path / "val.json"
    path.write_text(json.dumps({"results": {"someone_elses_video": [{"label": "x", "score": 1.0}]}}))
    with pytest.raises(UserError, match=r"--resume: 1 of the 1 results in .*val\.json are of videos this subset "
                                        r"does not hold \(e\.g\. someone_elses_video\)"):
        _run(config, tiny_model, resume=True)
    assert "someone_elses_video" in path.read_text()  # left as it was


def test_without_resume_an_earlier_output_is_kept_aside(motion, tiny_model, tmp_path):
    config = recognition_config(motion, tmp_path, flavour="seed")
    (tmp_path / "val_video.json").write_text('{"results": {"earlier": []}}')
    _run(config, tiny_model)
    assert json.loads((tmp_path / "val_video.1.json").read_text()) == {"results": {"earlier": []}}
    assert "earlier" not in json.loads((tmp_path / "val_video.json").read_text())["results"]


@pytest.mark.slow
def test_unreadable_videos_get_error_entries_and_the_run_goes_on(motion, tiny_model, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(motion.root, root)
    val = _val(motion)
    broken_mp4 = root / "videos" / f"{val[0]['rel_path']}.mp4"
    broken_mp4.write_bytes(b"this is not a video" * 10)
    config = recognition_config(motion, tmp_path / "out", file_type="video")
    config = replace(config, data=config.data.with_changes(video_path=str(root / "videos"),
                                                           annotation_path=str(root / "annotation.json")))
    summary = _run(config, tiny_model)
    assert summary["errors"] == 1 and summary["videos"] == 3
    doc = json.loads(Path(summary["output"]).read_text())
    assert set(doc["errors"]) == {val[0]["key"]} and str(broken_mp4) in doc["errors"][val[0]["key"]]
    assert set(doc["results"]) == {v["key"] for v in val[1:]}

    # a JPEG folder whose frames are all corrupt, read by two worker processes
    folder = root / "jpg" / val[1]["rel_path"]
    for jpeg in folder.glob("image_*.jpg"):
        jpeg.write_bytes(b"\xff\xd8 broken")
    config = recognition_config(motion, tmp_path / "out-jpg", workers=2)
    config = replace(config, data=config.data.with_changes(video_path=str(root / "jpg"),
                                                           annotation_path=str(root / "annotation.json")))
    doc = json.loads(Path(_run(config, tiny_model)["output"]).read_text())
    assert set(doc["errors"]) == {val[1]["key"]}
    # two workers finish videos in any order; the file keeps the annotation's
    assert list(doc["results"]) == [v["key"] for v in val if v is not val[1]]


@pytest.mark.slow
def test_distributed_shares_are_merged_by_rank_0(motion, tiny_model, tmp_path, monkeypatch):
    """Two processes each take every other video; rank 0 writes the one file. The ranks run as two
    threads (``as_two_ranks``)."""
    import copy

    from resnet3d.engine.distributed import DistInfo

    config = recognition_config(motion, tmp_path)
    config = replace(config, inference=replace(config.inference, fold_bn=False))  # (as_two_ranks says why)
    models = {rank: copy.deepcopy(tiny_model) for rank in (0, 1)}  # one model per process
    counters = {rank: ClipCounter(model) for rank, model in models.items()}
    outcomes = as_two_ranks(monkeypatch, lambda rank: _run(config, models[rank], dist=DistInfo(rank=rank, world_size=2)))
    assert all(isinstance(outcome, dict) for outcome in outcomes), outcomes
    assert counters[0].clips == counters[1].clips == 2 * 3
    doc = json.loads((tmp_path / "val.json").read_text())
    assert set(doc) == {"results"} and len(doc["results"]) == 4
    assert not list(tmp_path.glob(".val.json.rank*"))


@pytest.mark.slow
def test_main_continues_only_results_of_the_same_weights(motion, tiny_model, tmp_path):
    """``resnet3d main`` passes resume=None: an interrupted run of the same model continues; other
    weights start afresh and keep the earlier file; an explicit --resume with other weights fails."""
    from resnet3d.errors import UserError
    from resnet3d.models import create_model

    config = recognition_config(motion, tmp_path)
    _run(config, tiny_model)
    path = tmp_path / "val.json"
    full = json.loads(path.read_text())["results"]
    path.write_text(json.dumps({"results": dict(list(full.items())[:3])}))
    with ClipCounter(tiny_model) as same:
        _run(config, tiny_model, resume=None)
    assert same.clips == 3 and len(json.loads(path.read_text())["results"]) == 4

    torch.manual_seed(123)
    other = create_model("resnet", 10, n_classes=4).eval()
    with pytest.raises(UserError, match=r"were made with other settings \(weights\) than this run's"):
        _run(config, other, resume=True)
    with ClipCounter(other) as counting:
        _run(config, other, resume=None)
    assert counting.clips == 4 * 3  # all videos again
    assert json.loads((tmp_path / "val.1.json").read_text())["results"] == full


@pytest.mark.slow
def test_one_process_continuing_a_distributed_run_leaves_no_shares(motion, tiny_model, tmp_path):
    """An interrupted 2-process run left its shares beside the results; one process continued it
    and left them there, and every later --resume read them over the finished file again."""
    config = recognition_config(motion, tmp_path)
    _run(config, tiny_model)
    path = tmp_path / "val.json"
    full = json.loads(path.read_text())["results"]
    first, *rest = full
    path.write_text(json.dumps({"results": {key: full[key] for key in rest[:1]}}))
    share = tmp_path / ".val.json.rank1of2.json"  # what rank 1 had saved when it stopped
    share.write_text(json.dumps({"results": {first: full[first]}, "token": "earlier"}))
    with ClipCounter(tiny_model) as counting:
        _run(config, tiny_model, resume=True)
    assert counting.clips == 2 * 3  # the share's video and the file's were not recognised again
    assert json.loads(path.read_text())["results"].keys() == full.keys()
    assert not share.exists()


@pytest.mark.slow
def test_activitynet_segments_of_one_video_make_one_result(motion, tiny_model, tmp_path):
    """Every annotated segment of an ActivityNet video is one sample; the video gets one result
    (the mean over the windows of all its segments), or one entry per window without averaging."""
    taxonomy = [{"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None}] + [
        {"nodeId": i + 1, "nodeName": name, "parentId": 0, "parentName": "Root"}
        for i, name in enumerate(motion.class_names)]
    val = _val(motion)
    jpg = tmp_path / "jpg"
    database = {}
    for number, video in enumerate(val[:2]):
        key = f"vid{number}"
        shutil.copytree(Path(motion.jpg_path) / video["rel_path"], jpg / f"v_{key}")
        (jpg / f"v_{key}" / "fps").write_text("25.00\n")  # the seed's fps file
        database[key] = {"subset": "validation", "duration": 0.8, "annotations": [
            {"segment": [0.0, 0.36], "label": video["label"]}, {"segment": [0.4, 0.8], "label": video["label"]}]}
    annotation = tmp_path / "activitynet.json"
    annotation.write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": taxonomy, "database": database}))
    config = recognition_config(motion, tmp_path / "out", average=False, dataset="activitynet",
                                video_path=str(jpg), annotation_path=str(annotation))
    doc = json.loads(Path(_run(config, tiny_model)["output"]).read_text())
    assert set(doc["results"]) == {"vid0", "vid1"}
    for windows in doc["results"].values():
        # segment 1: frames ceil(0)=1 .. ceil(9)=9 (exclusive): one window; segment 2: 10 .. 20
        assert [w["segment"] for w in windows] == [[1, 9], [10, 18], [18, 20]]


def test_recognition_workers_fit_their_chunks_in_shared_memory(motion, tiny_model, tmp_path, monkeypatch, caplog):
    """Too little /dev/shm for two chunks per worker: one each, and the run completes; for none,
    one line with the fix before any worker starts."""
    from resnet3d.data import shared_memory
    from resnet3d.errors import UserError
    from resnet3d.engine.windows import ViewPlan

    chunk = ViewPlan(DURATION, 32).chunk_rows * DURATION * 32 * 32 * 3
    monkeypatch.setattr(shared_memory, "free_shared_memory", lambda path=shared_memory.SHM_PATH: (2 * 1 + 2) * chunk)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    config = recognition_config(motion, tmp_path / "fits", workers=2)
    assert config.data.sample_size == 32
    with caplog.at_level("WARNING", logger="resnet3d.data"):
        summary = _run(config, tiny_model)
    assert "each of 2 loader workers prefetches 1 batch(es)" in caplog.text
    assert summary["videos"] == 4 and summary["errors"] == 0
    monkeypatch.setattr(shared_memory, "free_shared_memory", lambda path=shared_memory.SHM_PATH: chunk)
    with pytest.raises(UserError, match="--shm-size"):
        _run(recognition_config(motion, tmp_path / "too-small", workers=2), tiny_model)


def test_automatic_resume_sets_aside_other_settings_results_saying_why(motion, tiny_model, tmp_path, capsys):
    """resnet3d main (resume=None) keeps an earlier file made with other settings as val.1.json; the
    notice says why, and does not offer --resume, which main does not take for recognition."""
    _run(recognition_config(motion, tmp_path, top_k=2), tiny_model, resume=None)
    capsys.readouterr()
    _run(recognition_config(motion, tmp_path, top_k=3), tiny_model, resume=None)
    err = capsys.readouterr().err
    assert (tmp_path / "val.1.json").exists()
    assert "kept it as val.1.json (its results were made with other settings (top_k) than this run's" in err
    assert "--resume" not in err
    _run(recognition_config(motion, tmp_path, top_k=4), tiny_model, resume=False)  # resnet3d test
    assert "kept it as val.2.json (pass --resume to continue it, --overwrite to replace it)" in capsys.readouterr().err
