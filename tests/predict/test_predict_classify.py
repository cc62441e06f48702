"""``resnet3d classify`` (and ``--overlay``) on generated MP4s, and ``resnet3d test`` from checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import pytest

from predict_helpers import DURATION

from resnet3d.classify.clips import clip_starts, video_clips
from resnet3d.cli import main
from resnet3d.synthetic import render_video, write_mp4


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory):
    """Three MP4s of 20, 13 and 5 frames (48x64), plus a file that is not a video."""
    root = tmp_path_factory.mktemp("own-videos")
    rng = np.random.default_rng(1)
    for name, frames, motion in (("a.mp4", 20, 0), ("sub/b.mp4", 13, 1), ("c.mp4", 5, 2)):
        write_mp4(root / name, render_video(motion, frames, (48, 64), rng), fps=24)
    (root / "broken.mp4").write_bytes(b"not a video at all" * 20)
    return root


def _decode(path):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, float(stream.average_rate)


def test_clip_starts_and_segments_with_loop_padding(clips_dir):
    assert clip_starts(20, 8, 8) == [1, 9, 17]
    assert clip_starts(16, 8, 8) == [1, 9]
    assert clip_starts(20, 8, 4) == [1, 5, 9, 13]
    assert clip_starts(5, 8, 8) == [1]
    clips = list(video_clips(str(clips_dir / "a.mp4"), 32, 8))
    assert [segment for segment, _ in clips] == [(1, 8), (9, 16), (17, 20)]
    last = clips[-1][1]
    assert last.shape == (8, 32, 32, 3)
    assert (last[4] == last[0]).all() and not (last[1] == last[0]).all()  # 17 18 19 20 17 18 19 20
    strided = list(video_clips(str(clips_dir / "a.mp4"), 32, 8, stride=4))
    assert [segment for segment, _ in strided] == [(1, 8), (5, 12), (9, 16), (13, 20)]


def test_score_mode_json_with_our_checkpoint_needs_no_model_flags(clips_dir, our_checkpoint, motion, tmp_path):
    out = tmp_path / "labels.json"
    status = main(["classify", str(clips_dir), "--model", str(our_checkpoint), "--output", str(out)])
    assert status == 1  # broken.mp4: as prepare frames, a script sees that a video is missing
    records = json.loads(out.read_text())
    assert [Path(r["video"]).name for r in records] == ["a.mp4", "broken.mp4", "c.mp4", "b.mp4"]
    by_name = {Path(r["video"]).name: r for r in records}
    assert "error" in by_name["broken.mp4"] and by_name["broken.mp4"]["clips"] == []
    assert [c["segment"] for c in by_name["a.mp4"]["clips"]] == [[1, 8], [9, 16], [17, 20]]
    assert [c["segment"] for c in by_name["b.mp4"]["clips"]] == [[1, 8], [9, 13]]
    assert [c["segment"] for c in by_name["c.mp4"]["clips"]] == [[1, 5]]
    for record in (by_name["a.mp4"], by_name["b.mp4"]):
        for clip in record["clips"]:
            assert sorted(clip) == ["label", "scores", "segment"] and len(clip["scores"]) == 4
            assert sum(clip["scores"]) == pytest.approx(1.0, abs=1e-5)
            assert clip["label"] == motion.class_names[int(np.argmax(clip["scores"]))]


def test_feature_mode_jsonl_streams_one_video_per_line(clips_dir, our_checkpoint, tmp_path):
    out = tmp_path / "features.jsonl"
    status = main(["classify", str(clips_dir / "a.mp4"), str(clips_dir / "c.mp4"), "--model", str(our_checkpoint),
                   "--mode", "feature", "--output", str(out)])
    assert status == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["video"].endswith("a.mp4") and len(first["clips"]) == 3
    assert sorted(first["clips"][0]) == ["features", "segment"] and len(first["clips"][0]["features"]) == 512


def test_overlay_copies_each_video_with_labels_drawn(clips_dir, our_checkpoint, tmp_path):
    out, overlay = tmp_path / "labels.json", tmp_path / "overlay"
    assert main(["classify", str(clips_dir / "a.mp4"), "--model", str(our_checkpoint), "--output", str(out),
                 "--overlay", str(overlay)]) == 0
    original, fps = _decode(clips_dir / "a.mp4")
    copied, copied_fps = _decode(overlay / "a.mp4")
    assert json.loads(out.read_text())[0]["overlay"] == str(overlay / "a.mp4")
    assert len(copied) == len(original) == 20 and copied_fps == pytest.approx(fps)
    for before, after in zip(original, copied):
        caption = np.abs(after[:8, :30].astype(int) - before[:8, :30]).mean()
        rest = np.abs(after[32:, 32:].astype(int) - before[32:, 32:]).mean()
        assert caption > 20 > rest * 2  # text and box drawn top left; elsewhere only coding noise


def test_overlay_never_replaces_an_input_video_and_earlier_overlays_only_with_overwrite(
        clips_dir, our_checkpoint, tmp_path, capsys):
    """`classify videos/ --overlay videos/` wrote each overlay over the video it was made from."""
    import shutil

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(clips_dir / "a.mp4", videos / "a.mp4")
    original = (videos / "a.mp4").read_bytes()
    base = ["classify", str(videos), "--model", str(our_checkpoint), "--output", str(tmp_path / "out.json")]
    assert main([*base, "--overlay", str(videos), "--overwrite"]) == 2
    assert "is inside the input folder" in capsys.readouterr().err and (videos / "a.mp4").read_bytes() == original
    named = ["classify", str(videos / "a.mp4"), "--model", str(our_checkpoint), "--output", str(tmp_path / "o.json")]
    assert main([*named, "--overlay", str(videos), "--overwrite"]) == 2
    assert "would write" in capsys.readouterr().err and (videos / "a.mp4").read_bytes() == original

    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "a.mp4").write_bytes(b"an earlier overlay")
    assert main([*base, "--overlay", str(overlay)]) == 2
    assert "already exists" in capsys.readouterr().err and (overlay / "a.mp4").read_bytes() == b"an earlier overlay"
    assert main([*base, "--overlay", str(overlay), "--overwrite"]) == 0
    assert len(_decode(overlay / "a.mp4")[0]) == 20


def test_companion_command_line_and_no_silent_overwrite(clips_dir, successor_checkpoint, motion, tmp_path, capsys):
    listing = tmp_path / "input"
    listing.write_text("# the companion's list: one video per line\na.mp4\n\nsub/b.mp4\n")
    labels = tmp_path / "class_names_list"
    labels.write_text("\n".join(motion.class_names) + "\n")
    out = tmp_path / "output.json"
    args = ["classify", "--input", str(listing), "--video_root", str(clips_dir), "--model", str(successor_checkpoint),
            "--mode", "score", "--output", str(out), "--labels", str(labels), "--sample_size", "32",
            "--sample_duration", str(DURATION), "--model_name", "resnet", "--model_depth", "10"]
    assert main(args) == 0
    records = json.loads(out.read_text())
    assert [r["video"] for r in records] == ["a.mp4", "sub/b.mp4"]
    assert {c["label"] for r in records for c in r["clips"]} <= set(motion.class_names)
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    # the wrong architecture flag is refused with the mismatch explained
    assert main(args[:-4] + ["--model_depth", "18", "--overwrite"]) == 2


def test_test_command_from_our_checkpoint_then_evaluate(motion, our_checkpoint, tmp_path, capsys):
    status = main(["test", "--weights", str(our_checkpoint), "--video_path", motion.jpg_path,
                   "--annotation_path", motion.annotation_path, "--subset", "val", "--result_path", str(tmp_path),
                   "--n_threads", "0", "--quiet", "--format", "seed"])
    assert status == 0
    doc = json.loads((tmp_path / "val_video.json").read_text())
    assert len(doc["results"]) == 4 and all(len(v) == 4 for v in doc["results"].values())
    assert main(["evaluate", motion.annotation_path, str(tmp_path / "val_video.json"), "--subset", "val"]) == 0
    assert "subset validation: 4 videos, 4 with a result" in capsys.readouterr().out


def test_test_warns_when_the_models_classes_and_the_annotations_share_no_name(motion, our_checkpoint, tmp_path,
                                                                             caplog):
    """A Kinetics model tested on another data set: results would name classes no video has."""
    data = json.loads(Path(motion.annotation_path).read_text())
    rename = {name: f"other {name}" for name in data["labels"]}
    data["labels"] = [rename[name] for name in data["labels"]]
    for entry in data["database"].values():
        entry["annotations"]["label"] = rename[entry["annotations"]["label"]]
    annotation = tmp_path / "other.json"
    annotation.write_text(json.dumps(data))
    frames = tmp_path / "jpg"  # the same frame folders under the renamed class folders
    frames.mkdir()
    for old, new in rename.items():
        (frames / new).symlink_to(Path(motion.jpg_path) / old, target_is_directory=True)
    args = ["test", "--weights", str(our_checkpoint), "--n_threads", "0", "--quiet"]
    with caplog.at_level("WARNING", logger="resnet3d.predict"):
        assert main([*args, "--video_path", str(frames), "--annotation_path", str(annotation),
                     "--result_path", str(tmp_path / "a")]) == 0
    assert "share no name" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="resnet3d.predict"):  # the matching annotation: no warning
        assert main([*args, "--video_path", motion.jpg_path, "--annotation_path", motion.annotation_path,
                     "--result_path", str(tmp_path / "b")]) == 0
    assert "share no name" not in caplog.text


def test_test_command_successor_checkpoint_with_flags_and_multi_view(motion, successor_checkpoint, tmp_path):
    out = tmp_path / "views.json"
    status = main(["test", "--weights", str(successor_checkpoint), "--video_path", motion.video_path,
                   "--file_type", "video", "--annotation_path", motion.annotation_path, "--subset", "validation",
                   "--output", str(out), "--n_threads", "0", "--quiet", "--sample_size", "32",
                   "--sample_duration", str(DURATION), "--clips", "2", "--crops", "3", "--top-k", "1",
                   "--labels", motion.annotation_path])
    assert status == 0
    results = json.loads(out.read_text())["results"]
    assert len(results) == 4 and all(len(v) == 1 and v[0]["label"] in motion.class_names for v in results.values())


def test_features_with_and_without_folded_batchnorm_agree(clips_dir, our_checkpoint, tmp_path):
    """classify folds BatchNorm into the convs by default; --no-fold-bn runs the model as it is:
    the features differ by float rounding only."""
    features = {}
    for flag in ("--fold-bn", "--no-fold-bn"):
        out = tmp_path / f"features{flag}.jsonl"
        assert main(["classify", str(clips_dir / "a.mp4"), "--model", str(our_checkpoint), "--mode", "feature",
                     "--output", str(out), flag]) == 0
        record = json.loads(out.read_text().splitlines()[0])
        features[flag] = np.array([clip["features"] for clip in record["clips"]])
    folded, plain = features["--fold-bn"], features["--no-fold-bn"]
    assert folded.shape == plain.shape and np.abs(plain).max() > 0
    assert np.allclose(folded, plain, rtol=1e-4, atol=1e-5 * np.abs(plain).max())


def test_weights_with_fewer_outputs_than_the_annotations_labels_are_named_with_a_warning(
        motion, tmp_path, caplog):
    """A successor checkpoint records no class names: its 3 outputs took the first 3 of the
    annotation's 4 labels without a word (Kinetics-400 weights tested on a Kinetics-700 JSON)."""
    from resnet3d.models import create_model

    weights = tmp_path / "save_3.pth"
    torch.save({"epoch": 3, "arch": "resnet-10", "state_dict": create_model("resnet", 10, n_classes=3).state_dict()},
               weights)
    with caplog.at_level("WARNING", logger="resnet3d.predict"):
        assert main(["test", "--weights", str(weights), "--n_threads", "0", "--quiet", "--device", "cpu",
                     "--sample-size", "32", "--sample-duration", "8", "--video_path", motion.jpg_path,
                     "--annotation_path", motion.annotation_path, "--subset", "val", "--result_path", str(tmp_path)]) == 0
    assert "the model has 3 outputs but the annotation lists 4 labels" in caplog.text
    assert "--labels FILE" in caplog.text and "A warning, not an error: the weights record no class names" in caplog.text
    results = json.loads((tmp_path / "val.json").read_text())["results"]
    assert {entry["label"] for entries in results.values() for entry in entries} == set(motion.class_names[:3])


def test_a_file_name_starting_with_a_dash_goes_after_double_dash(clips_dir, our_checkpoint, tmp_path, monkeypatch):
    """The README's form: ``resnet3d classify --model m.pth -- -take1.mp4``."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(clips_dir / "c.mp4", tmp_path / "-take1.mp4")
    out = tmp_path / "dash.json"
    assert main(["classify", "--model", str(our_checkpoint), "--output", str(out), "--", "-take1.mp4"]) == 0
    (record,) = json.loads(out.read_text())
    assert Path(record["video"]).name == "-take1.mp4" and [c["segment"] for c in record["clips"]] == [[1, 5]]


def test_a_dash_file_given_like_an_option_is_explained(clips_dir, our_checkpoint, tmp_path, monkeypatch, capsys):
    """argparse said only 'unrecognized arguments: -take1.mp4'."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(clips_dir / "c.mp4", tmp_path / "-take1.mp4")
    with pytest.raises(SystemExit) as stop:
        main(["classify", "--model", str(our_checkpoint), "--output", "o.json", "-take1.mp4"])
    assert stop.value.code == 2
    assert "-take1.mp4 is a file: a name that starts with '-' goes after '--'" in capsys.readouterr().err


def _write_timed_mp4(path: Path, times_ms, faststart: bool = False) -> Path:
    """H.264 frames at the given times (a variable frame rate when they are uneven), grey level
    10 * (index + 1) (up to 25 frames; then it wraps); ``faststart`` puts the index before the frames, as web videos have it."""
    import av
    from fractions import Fraction

    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        stream.codec_context.time_base = Fraction(1, 1000)
        for index, ms in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * (index % 25 + 1), np.uint8), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_a_cut_download_is_classified_on_the_frames_that_decode_and_says_so(our_checkpoint, tmp_path, capsys):
    """A faststart MP4 cut in half keeps its index, which announces 40 frames; about half decode.
    It used to be classified on them without a word."""
    whole = _write_timed_mp4(tmp_path / "whole.mp4", [40 * i for i in range(40)], faststart=True)
    videos = tmp_path / "videos"
    videos.mkdir()
    data = whole.read_bytes()
    (videos / "cut.mp4").write_bytes(data[: len(data) // 2])
    (videos / "whole.mp4").write_bytes(data)
    out = tmp_path / "labels.json"
    assert main(["classify", str(videos), "--model", str(our_checkpoint), "--output", str(out)]) == 0
    by_name = {Path(r["video"]).name: r for r in json.loads(out.read_text())}
    assert "warning" not in by_name["whole.mp4"] and by_name["whole.mp4"]["clips"][-1]["segment"][1] == 40
    cut = by_name["cut.mp4"]
    decoded = cut["clips"][-1]["segment"][1]
    assert 5 < decoded < 30 and "error" not in cut
    assert cut["warning"] == (f"{videos / 'cut.mp4'}: truncated: decoded {decoded} of the ~40 frames the file "
                              f"announces; the clips cover the {decoded} frames that decoded")
    printed = capsys.readouterr()
    assert cut["warning"] in printed.err
    assert "2 of 2 videos classified (score), 1 of them only in part (warnings above)" in printed.out


def test_the_overlay_copy_keeps_each_frames_time(our_checkpoint, tmp_path):
    """A phone's variable frame rate: the copy used to be written at a constant rate, so its
    frames drifted from the input's and from the audio."""
    times = [0, 40, 80, 200, 240, 500, 540, 580, 1000, 1040, 1080, 1120]
    videos = tmp_path / "videos"
    videos.mkdir()
    _write_timed_mp4(videos / "phone.mp4", times)
    overlay = tmp_path / "overlay"
    assert main(["classify", str(videos), "--model", str(our_checkpoint), "--output", str(tmp_path / "l.json"),
                 "--overlay", str(overlay)]) == 0
    import av

    with av.open(str(overlay / "phone.mp4")) as container:
        stream = container.streams.video[0]
        frames = [(round(float(f.pts * stream.time_base) * 1000), f.to_ndarray(format="rgb24"))
                  for f in container.decode(stream)]
    assert [ms for ms, _ in frames] == times
    greys = [round(float(picture[30:, 40:].mean()) / 10) for _, picture in frames]  # below the caption
    assert greys == list(range(1, len(times) + 1))


def test_a_corrupt_frame_is_filled_and_counted(our_checkpoint, tmp_path):
    """One MJPEG frame zeroed in the middle of an AVI: the other 29 are classified, the lost one
    filled as ffmpeg's extraction (the companion tool's) fills it, so the clips' segments count
    frames as the companion tool's did, and the record says so (the reader used to stop at the
    first bad packet, then skipped the frame, which shifted every later segment by one)."""
    import av

    clean = tmp_path / "clean.avi"
    with av.open(str(clean), "w") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for index in range(30):
            picture = np.full((48, 64, 3), 8 * index, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = bytearray(clean.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # each frame's JPEG
    assert len(starts) == 30
    data[starts[10]:starts[11] - 8] = bytes(starts[11] - 8 - starts[10])  # frame 11's JPEG, zeroed
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "bad.avi").write_bytes(bytes(data))
    out = tmp_path / "labels.json"
    assert main(["classify", str(videos), "--model", str(our_checkpoint), "--output", str(out)]) == 0
    (record,) = json.loads(out.read_text())
    assert record["clips"][-1]["segment"][1] == 30
    assert record["warning"].endswith("bad.avi: 1 frame could not be decoded (corrupt data); the clips cover 30 "
                                      "frames, 1 of them filled from the frames beside them as ffmpeg's extraction "
                                      "fills them")
    from resnet3d.classify.clips import timed_frames

    frames = list(timed_frames(str(videos / "bad.avi"), problems=[]))
    greys = [round(float(picture.mean()) / 8) for picture, _ in frames]
    assert greys == [*range(10), 11, 11, *range(12, 30)]  # ffmpeg 5.1's sequence for a lost frame 11
    assert [round(at * 25) for _, at in frames] == list(range(30))  # each at the time of the frame it stands for


def _checkpoint_naming(class_names, n_outputs, path):
    """Our checkpoint of a ResNet-10 (width 1/4) with ``n_outputs`` outputs that records
    ``class_names``: as many or not."""
    from resnet3d.engine.checkpoint import save_checkpoint
    from resnet3d.models import create_model
    from resnet3d.normalization import KINETICS

    model = create_model("resnet", 10, n_classes=n_outputs, widen_factor=0.25)
    save_checkpoint(path, {"epoch": 1, "arch": "resnet-10", "model_config": model.model_config,
                           "state_dict": model.state_dict(), "optimizer": None, "scheduler": None,
                           "class_names": list(class_names), "input_norm": KINETICS.to_dict(),
                           "sample_size": 32, "sample_duration": DURATION})
    return path


def test_a_model_with_more_outputs_than_classes_names_the_others_by_index(motion, clips_dir, tmp_path, capsys):
    """resnet3d main's default --n_classes is the successor's 400: trained so on a 4-class set, the
    checkpoint holds 4 names for 400 outputs. test and classify refused it ("pass a labels file
    with 400 names", which nobody has) while main --inference accepted it."""
    weights = _checkpoint_naming(motion.class_names, n_outputs=6, path=tmp_path / "model_best.pth")
    assert main(["test", "--weights", str(weights), "--n_threads", "0", "--quiet", "--device", "cpu",
                 "--video_path", motion.jpg_path, "--annotation_path", motion.annotation_path, "--subset", "val",
                 "--result_path", str(tmp_path / "run"), "--top-k", "6"]) == 0
    assert "has 6 outputs for its 4 classes" in capsys.readouterr().err
    results = json.loads((tmp_path / "run" / "val.json").read_text())["results"]
    assert {e["label"] for entries in results.values() for e in entries} == {*motion.class_names, "4", "5"}
    out = tmp_path / "labels.json"
    assert main(["classify", str(clips_dir / "a.mp4"), "--model", str(weights), "--output", str(out)]) == 0
    assert len(json.loads(out.read_text())[0]["clips"][0]["scores"]) == 6
    # a labels file the user gives must still fit
    labels = tmp_path / "names.txt"
    labels.write_text("a\nb\nc\n")
    assert main(["classify", str(clips_dir / "a.mp4"), "--model", str(weights), "--output", str(out),
                 "--overwrite", "--labels", str(labels)]) == 2
    err = capsys.readouterr().err
    assert f"the model has 6 outputs but --labels {labels} names 3 classes: a labels file names the model's" in err
    assert "pass the file of the model's 6 classes" in err


def test_main_names_a_model_with_more_outputs_than_classes_by_its_checkpoint_whatever_the_annotation_order(
        motion, tmp_path):
    """A checkpoint of 6 outputs naming its 4 classes (trained with main's default --n_classes 400 on
    a small set): resnet3d main --no_train dropped its names for the annotation's labels, so an
    annotation listing them in another order mislabelled every result and scored validation
    against the wrong outputs; resnet3d test named them right."""
    weights = _checkpoint_naming(motion.class_names, n_outputs=6, path=tmp_path / "model_best.pth")
    document = json.loads(Path(motion.annotation_path).read_text())
    document["labels"] = list(reversed(document["labels"]))
    reordered = tmp_path / "reversed.json"
    reordered.write_text(json.dumps(document))

    def main_scores(annotation, name):
        assert main(["main", "--video_path", motion.jpg_path, "--annotation_path", str(annotation),
                     "--dataset", motion.dataset, "--resume_path", str(weights), "--no_train", "--inference",
                     "--inference_subset", "val", "--output_topk", "6", "--n_threads", "0", "--batch_size", "4",
                     "--no_cuda", "--result_path", str(tmp_path / name)]) == 0
        results = json.loads((tmp_path / name / "val.json").read_text())["results"]
        scores = {video: {e["label"]: e["score"] for e in entries} for video, entries in results.items()}
        return scores, json.loads((tmp_path / name / "val_metrics.json").read_text())

    as_trained, first = main_scores(motion.annotation_path, "as-trained")
    reversed_scores, second = main_scores(reordered, "reversed")
    assert len(as_trained) == 4 and {*motion.class_names, "4", "5"} == set(next(iter(as_trained.values())))
    for video, by_label in reversed_scores.items():
        assert by_label == pytest.approx(as_trained[video], abs=1e-6)
    assert second["loss"] == pytest.approx(first["loss"], rel=1e-6)
    assert second["video_acc"] == first["video_acc"]


def test_outputs_are_checked_before_any_work_and_never_replace_an_input(
        motion, clips_dir, our_checkpoint, tmp_path, capsys):
    """classify found an unwritable --output only after classifying every video, and
    `--output MODEL --overwrite` (test: the weights or the annotation) replaced the input with
    results."""
    import shutil

    weights = tmp_path / "model.pth"
    shutil.copy(our_checkpoint, weights)
    kept = weights.read_bytes()
    base = ["classify", str(clips_dir / "a.mp4"), "--model", str(weights)]
    assert main([*base, "--output", str(weights), "--overwrite"]) == 2
    assert "is the file --model reads" in capsys.readouterr().err and weights.read_bytes() == kept
    assert main([*base, "--output", str(clips_dir / "a.mp4"), "--overwrite"]) == 2
    assert "is the file an input video reads" in capsys.readouterr().err
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main([*base, "--output", str(blocker / "labels.json")]) == 2
    err = capsys.readouterr().err
    assert f"--output {blocker / 'labels.json'}: cannot write there" in err and "classified" not in err
    (tmp_path / "folder").mkdir()
    assert main([*base, "--output", str(tmp_path / "folder"), "--overwrite"]) == 2
    assert "is a folder; name a file" in capsys.readouterr().err

    annotation = tmp_path / "annotation.json"
    shutil.copy(motion.annotation_path, annotation)
    test = ["test", "--weights", str(weights), "--n_threads", "0", "--quiet", "--device", "cpu",
            "--video_path", motion.jpg_path, "--annotation_path", str(annotation), "--subset", "val"]
    for output, flag in ((weights, "--weights"), (annotation, "--annotation_path")):
        before = output.read_bytes()
        assert main([*test, "--output", str(output), "--overwrite"]) == 2
        assert f"is the file {flag} reads" in capsys.readouterr().err and output.read_bytes() == before
    assert main([*test, "--output", str(annotation)]) == 2  # refused, not set aside as annotation.1.json
    assert not (tmp_path / "annotation.1.json").exists()


def test_a_labels_file_saved_with_a_bom_names_the_first_class_cleanly(tmp_path):
    """Notepad writes a UTF-8 BOM: it became an invisible first character of the first class."""
    from resnet3d.engine.predict_model import read_labels

    labels = tmp_path / "class_names_list"
    labels.write_bytes("\ufeffwalk\nrun\n".encode("utf-8"))
    assert read_labels(str(labels)) == ["walk", "run"]


def test_test_and_classify_find_an_epochs_checkpoint_under_the_other_name(
        motion, clips_dir, our_checkpoint, successor_checkpoint, tmp_path, capsys):
    """The successor's scripts name save_<N>.pth, our runs write model_<N>.pth: `test --weights
    run/save_2.pth` and `classify --model run/save_2.pth` stopped at 'no such file' where
    `main --resume_path` already took model_2.pth, with a note."""
    import shutil

    ours = tmp_path / "ours"
    ours.mkdir()
    shutil.copy(our_checkpoint, ours / "model_2.pth")
    asked = ours / "save_2.pth"
    note = f"{asked} does not exist: using {ours / 'model_2.pth'}, the same epoch's checkpoint under the other name"
    out = tmp_path / "labels.json"
    assert main(["classify", str(clips_dir / "a.mp4"), "--model", str(asked), "--output", str(out)]) == 0
    assert note in capsys.readouterr().err
    direct = tmp_path / "direct.json"
    assert main(["classify", str(clips_dir / "a.mp4"), "--model", str(our_checkpoint), "--output", str(direct)]) == 0
    assert json.loads(out.read_text())[0]["clips"] == json.loads(direct.read_text())[0]["clips"]
    test = ["test", "--video_path", motion.jpg_path, "--annotation_path", motion.annotation_path, "--subset", "val",
            "--n_threads", "0", "--quiet", "--device", "cpu"]
    assert main([*test, "--weights", str(asked), "--result_path", str(tmp_path / "t")]) == 0
    assert note in capsys.readouterr().err
    assert len(json.loads((tmp_path / "t" / "val.json").read_text())["results"]) == 4
    # the file really read is the one an output may not replace
    kept = (ours / "model_2.pth").read_bytes()
    assert main(["classify", str(clips_dir / "a.mp4"), "--model", str(asked), "--output", str(ours / "model_2.pth"),
                 "--overwrite"]) == 2
    assert "is the file --model reads" in capsys.readouterr().err
    assert main([*test, "--weights", str(asked), "--output", str(ours / "model_2.pth"), "--overwrite"]) == 2
    assert "is the file --weights reads" in capsys.readouterr().err and (ours / "model_2.pth").read_bytes() == kept
    # the reverse: our name asked, only the successor's file there
    theirs = successor_checkpoint.parent / "model_2.pth"
    assert main(["classify", str(clips_dir / "a.mp4"), "--model", str(theirs), "--output", str(tmp_path / "s.json"),
                 "--sample-size", "32", "--sample-duration", str(DURATION)]) == 0
    assert f"{theirs} does not exist: using {successor_checkpoint}" in capsys.readouterr().err
    # neither name there: the file asked for is the one missing
    assert main(["classify", str(clips_dir / "a.mp4"), "--model", str(ours / "save_3.pth"),
                 "--output", str(tmp_path / "n.json")]) == 2
    assert f"{ours / 'save_3.pth'}: no such file" in capsys.readouterr().err


def test_too_few_or_too_many_names_for_the_outputs_error_or_warn_by_where_the_names_come_from(
        motion, clips_dir, tmp_path, capsys, caplog):
    """Names that claim to be the model's own (a labels file, a checkpoint's) must fit its outputs:
    an error before anything runs. An annotation's labels standing in for weights without names
    only warn: its 4 labels for a 6-output model name outputs 4-5 by their index."""
    from resnet3d.engine.predict import _class_names
    from resnet3d.models import create_model

    weights = _checkpoint_naming(motion.class_names, n_outputs=3, path=tmp_path / "model_best.pth")
    assert main(["classify", str(clips_dir / "a.mp4"), "--model", str(weights), "--output",
                 str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert f"{weights}: the model has 3 outputs but the checkpoint names 4 classes, so it does not say" in err
    assert "pass --labels FILE with its 3 class names in output order" in err

    successor = tmp_path / "save_1.pth"
    torch.save({"epoch": 1, "arch": "resnet-10",
                "state_dict": create_model("resnet", 10, n_classes=6, widen_factor=0.25).state_dict()}, successor)
    with caplog.at_level("WARNING", logger="resnet3d.predict"):
        assert main(["test", "--weights", str(successor), "--n_threads", "0", "--quiet", "--device", "cpu",
                     "--sample-size", "32", "--sample-duration", str(DURATION), "--video_path", motion.jpg_path,
                     "--annotation_path", motion.annotation_path, "--subset", "val",
                     "--result_path", str(tmp_path), "--top-k", "6"]) == 0
    assert ("the model has 6 outputs but only 4 class names are known (the annotation's labels); outputs 4-5 are "
            "named by their index. A warning, not an error") in caplog.text
    results = json.loads((tmp_path / "val.json").read_text())["results"]
    assert {e["label"] for entries in results.values() for e in entries} == {*motion.class_names, "4", "5"}
    caplog.clear()
    with caplog.at_level("WARNING", logger="resnet3d.predict"):  # resnet3d main: the run's own classes
        assert _class_names(["a", "b"], ["a", "b"], 3) == ["a", "b", "2"]
    assert "only 2 class names are known (the run's classes); output 2 is named by its index" in caplog.text
