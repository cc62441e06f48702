"""ActivityNet fps, a user's own folder data set, the seed's n_frames/fps utilities and stats."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prepare_videos import write_video
from resnet3d import cli
from resnet3d.errors import UserError
from resnet3d.prepare.activitynet import add_fps
from resnet3d.prepare.folder_dataset import folder_json
from resnet3d.prepare.frame_folders import image_name
from resnet3d.prepare.legacy_files import write_fps_files, write_n_frames_files
from resnet3d.prepare.stats import dataset_stats


def frames(folder: Path, n: int, colour=(0, 0, 0), indices=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in indices or range(1, n + 1):
        Image.new("RGB", (8, 6), colour).save(folder / image_name(index), quality=100)
    return folder


def official_json() -> dict:
    def video(duration):
        return {"subset": "training", "duration": duration, "resolution": "64x48", "url": "https://youtu.be/x",
                "annotations": [{"segment": [0.1, 0.3], "label": "Drinking coffee"}]}

    return {
        "version": "VERSION 1.3",
        "taxonomy": [{"nodeId": 1, "nodeName": "Root", "parentId": None, "parentName": None},
                     {"nodeId": 2, "nodeName": "Drinking coffee", "parentId": 1, "parentName": "Root"}],
        "database": {"abcdefghijk": video(0.48), "lmnopqrstuv": video(0.4), "zzzzzzzzzzz": video(1.0)},
    }


@pytest.fixture
def activitynet(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "v_abcdefghijk.mp4", n_frames=12, rate=25)  # the crawler's name
    write_video(videos / "lmnopqrstuv.mp4", n_frames=6, rate=15)  # a bare YouTube id
    write_video(videos / "v_notinjson00.mp4", n_frames=2)
    path = tmp_path / "activity_net.v1-3.min.json"
    path.write_text(json.dumps(official_json()))
    return videos, path


def test_activitynet_fps_from_videos_in_place(activitynet, tmp_path):
    videos, path = activitynet
    original = path.read_bytes()
    report = add_fps(videos, path)
    expected = official_json()
    expected["database"]["abcdefghijk"]["fps"] = 25.0
    expected["database"]["lmnopqrstuv"]["fps"] = 15.0
    assert path.read_text() == json.dumps(expected)
    assert (tmp_path / "activity_net.v1-3.min.json.bak").read_bytes() == original
    assert report.updated == 2 and report.not_in_json == ["v_notinjson00.mp4"]


def test_activitynet_seed_fps_files(activitynet, tmp_path):
    videos, path = activitynet
    frame_dir = tmp_path / "jpg"
    frames(frame_dir / "v_abcdefghijk", 12)
    out = tmp_path / "out.json"
    with pytest.raises(UserError, match="--fps-files needs --frame-dir"):
        add_fps(videos, path, out, fps_files=True)
    report = add_fps(videos, path, out, fps_files=True, frame_dir=frame_dir)
    assert (frame_dir / "v_abcdefghijk" / "fps").read_text() == "25.0\n"  # 12 frames / 0.48 s
    assert report.fps_files == 1 and report.no_frame_folder == 1
    assert not (tmp_path / "activity_net.v1-3.min.json.bak").exists()  # OUT_JSON given: input untouched


def test_activitynet_fps_from_frame_folders(activitynet, tmp_path):
    _, path = activitynet
    frame_dir = tmp_path / "jpg"
    frames(frame_dir / "v_abcdefghijk", 3)
    (frame_dir / "v_abcdefghijk" / "fps").write_text("29.97\n")
    frames(frame_dir / "v_lmnopqrstuv", 6)  # no fps file: 6 frames / the JSON's 0.4 s
    out = tmp_path / "out.json"
    assert cli.main(["prepare", "activitynet-json", str(frame_dir), str(path), str(out), "--fps-files"]) == 0
    database = json.loads(out.read_text())["database"]
    assert database["abcdefghijk"]["fps"] == 29.97 and database["lmnopqrstuv"]["fps"] == 15.0
    assert "fps" not in database["zzzzzzzzzzz"]
    assert (frame_dir / "v_lmnopqrstuv" / "fps").read_text() == "15.0\n"


def test_activitynet_out_json_is_replaced_only_with_overwrite_and_in_place_keeps_the_first_backup(activitynet, tmp_path, capsys):
    videos, path = activitynet
    original = path.read_bytes()
    out = tmp_path / "out.json"
    out.write_text("my own file")
    assert cli.main(["prepare", "activitynet-json", str(videos), str(path), str(out)]) == 2
    assert f"OUT_JSON {out} already exists: pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "my own file"
    assert cli.main(["prepare", "activitynet-json", str(videos), str(path), str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["database"]["abcdefghijk"]["fps"] == 25.0
    # in place (no OUT_JSON, or OUT_JSON naming JSON itself): twice, and the backup stays the original
    for argv in ([str(videos), str(path)], [str(videos), str(path), str(path)]):
        assert cli.main(["prepare", "activitynet-json", *argv]) == 0
        assert json.loads(path.read_text())["database"]["abcdefghijk"]["fps"] == 25.0
        assert (tmp_path / "activity_net.v1-3.min.json.bak").read_bytes() == original


def test_folder_json_replaces_only_with_overwrite(own_dataset, tmp_path):
    out = tmp_path / "mine.json"
    out.write_text("mine")
    with pytest.raises(UserError, match=r"OUT_JSON .*mine.json already exists: pass --overwrite"):
        folder_json(own_dataset, out)
    assert out.read_text() == "mine"


def test_activitynet_bad_json(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text('{"database": [1,\n 2')
    with pytest.raises(UserError, match=r"a.json: not valid JSON \(line 2 column"):
        add_fps(tmp_path, bad)


@pytest.fixture
def own_dataset(tmp_path):
    root = tmp_path / "mydata"
    for name in ("x", "y", "w"):
        write_video(root / "cats" / f"{name}.mp4", n_frames=2)
    frames(root / "cats" / "z", 2)
    for name in ("p", "q"):
        write_video(root / "dogs" / f"{name}.mp4", n_frames=2)
    (root / "dogs" / "readme.txt").write_text("ignored")
    return root


def test_folder_json_random_split_is_stratified_and_repeatable(own_dataset, tmp_path):
    out = tmp_path / "mine.json"
    folder_json(own_dataset, out, val_ratio=0.5, seed=3)
    data = json.loads(out.read_text())
    assert data["labels"] == ["cats", "dogs"]
    database = data["database"]
    assert sorted(database) == ["p", "q", "w", "x", "y", "z"]
    for label, size in (("cats", 4), ("dogs", 2)):
        subsets = [e["subset"] for e in database.values() if e["annotations"]["label"] == label]
        assert subsets.count("validation") == size // 2
    assert database["z"]["annotations"]["segment"] == [1, 3]
    first = out.read_text()
    folder_json(own_dataset, out, val_ratio=0.5, seed=3, overwrite=True)
    assert out.read_text() == first


def test_folder_json_lists(own_dataset, tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("cats/x.mp4 1\r\ncats/y.mp4 1\r\ndogs/p.mp4 2\r\n")
    val = tmp_path / "val.txt"
    val.write_text("cats/z\ndogs/q.mp4\n")
    out = tmp_path / "mine.json"
    report = folder_json(own_dataset, out, train_list=train, val_list=val)
    subsets = {k: e["subset"] for k, e in json.loads(out.read_text())["database"].items()}
    assert subsets == {"x": "training", "y": "training", "p": "training", "z": "validation", "q": "validation"}
    assert "1 items in neither list left out" in report
    folder_json(own_dataset, out, val_list=val, overwrite=True)  # one list: the rest trains
    subsets = {k: e["subset"] for k, e in json.loads(out.read_text())["database"].items()}
    assert sorted(k for k, s in subsets.items() if s == "training") == ["p", "w", "x", "y"]
    val.write_text("cats/z\ncats/nothing.mp4\n")
    with pytest.raises(UserError, match=r"val.txt: line 2: 'cats/nothing.mp4' is not a video"):
        folder_json(own_dataset, out, val_list=val, overwrite=True)


def test_folder_json_duplicate_keys(own_dataset, tmp_path):
    write_video(own_dataset / "dogs" / "x.mkv", n_frames=2)
    with pytest.raises(UserError, match="share the key 'x'"):
        folder_json(own_dataset, tmp_path / "o.json")


def test_n_frames_files(tmp_path, capsys):
    root = tmp_path / "jpg"
    frames(root / "a" / "v1", 3)
    frames(root / "a" / "v2", 0, indices=[1, 2, 4])  # a hole at 3
    (root / "a" / "v3").mkdir()  # extraction produced nothing
    (root / "b").mkdir()  # an empty class folder is not a video
    assert cli.main(["prepare", "n-frames", str(root)]) == 0
    assert [(root / "a" / v / "n_frames").read_text() for v in ("v1", "v2", "v3")] == ["3", "4", "0"]
    assert not (root / "a" / "n_frames").exists() and not (root / "b" / "n_frames").exists()
    out = capsys.readouterr().out
    assert "3 written" in out and "1 folders miss frames" in out and "1 empty" in out
    assert write_n_frames_files(root).unchanged == 3


def test_n_frames_over_folders_of_another_tools_frame_names_says_so(tmp_path):
    root = tmp_path / "jpg"
    frames(root / "a" / "v1", 3)
    for index in (1, 2, 3):
        (root / "a" / "v1" / image_name(index)).rename(root / "a" / "v1" / f"img_{index:05d}.jpg")
    with pytest.raises(UserError, match=r"no folder under .*jpg holds image_%05d.jpg frames: .*v1: the folder holds "
                                        r"3 image files named like 'img_00001.jpg'.*resnet3d prepare frames"):
        write_n_frames_files(root)
    (root / "a" / "v1").rename(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="holds image_%05d.jpg frames: extract frames first"):
        write_n_frames_files(root)


def test_n_frames_leaves_folders_of_another_zero_padding_unread_and_says_so(tmp_path, capsys):
    """image_0001.jpg (ffmpeg's %04d) matched the frame pattern: n-frames wrote a count for a
    folder whose frames the loader never finds."""
    root = tmp_path / "jpg"
    frames(root / "a" / "v1", 3)
    frames(root / "a" / "v2", 3)
    for index in (1, 2, 3):
        (root / "a" / "v2" / image_name(index)).rename(root / "a" / "v2" / f"image_{index:04d}.jpg")
    assert cli.main(["prepare", "n-frames", str(root)]) == 0
    out = capsys.readouterr().out
    assert (root / "a" / "v1" / "n_frames").read_text() == "3" and not (root / "a" / "v2" / "n_frames").exists()
    assert "1 folders left without n_frames" in out and "numbered with 4 digits" in out
    (root / "a" / "v1").rename(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="no folder under .* holds frames training reads: .*v2: .*4 digits"):
        write_n_frames_files(root)


def test_fps_files(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "clip.mp4", n_frames=10, rate=25)
    write_video(videos / "gone.mp4", n_frames=2)
    frame_dir = tmp_path / "jpg"
    frames(frame_dir / "clip", 10)
    report = write_fps_files(videos, frame_dir)
    assert (frame_dir / "clip" / "fps").read_text() == "25.0\n"
    assert report.written == 1 and report.missing == [str(frame_dir / "gone")]


def test_stats_of_known_colours(tmp_path, capsys):
    root = tmp_path / "jpg"
    frames(root / "c" / "red", 4, colour=(255, 0, 0))
    frames(root / "c" / "black", 4, colour=(0, 0, 0))
    result = dataset_stats(root, samples=400, seed=1)  # 8 frames in all: each read once, exactly
    assert result.frames == 8 and result.videos == 2
    assert result.mean[0] == pytest.approx(0.5, abs=0.01)  # half the frames are red
    assert result.mean[1] < 0.02 and result.mean[2] < 0.02
    assert result.std[0] == pytest.approx(0.5, abs=0.01)
    sampled = dataset_stats(root, samples=6, seed=1)  # fewer samples than frames: drawn at random
    red_share = sampled.mean[0]  # the mean of R is the share of red frames sampled
    assert sampled.frames == 6 and red_share * 6 == pytest.approx(round(red_share * 6), abs=0.05)
    assert sampled.std[0] == pytest.approx(np.sqrt(red_share * (1 - red_share)), abs=0.02)
    annotation = tmp_path / "a.json"
    annotation.write_text(json.dumps({"labels": ["c"], "database": {
        "red": {"subset": "training", "annotations": {"label": "c"}},
        "black": {"subset": "validation", "annotations": {"label": "c"}}}}))
    only_red = dataset_stats(root, samples=20, annotation=annotation, subset="training")
    assert only_red.mean[0] > 0.98 and only_red.videos == 1
    assert cli.main(["prepare", "stats", str(root), "--samples", "50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert set(json.loads(lines[0])) >= {"mean", "std", "frames"} and lines[1].startswith("flags: --mean ")


def test_stats_skip_and_count_frames_that_do_not_decode(tmp_path, caplog):
    """One corrupt frame stopped the whole run; a PNG named .jpg (which training reads) too."""
    from PIL import Image

    root = tmp_path / "jpg"
    frames(root / "c" / "v", 3, colour=(9, 9, 9))
    (root / "c" / "v" / image_name(2)).write_bytes(b"\xff\xd8 not a whole JPEG")
    Image.new("RGB", (16, 16), (9, 9, 9)).save(root / "c" / "v" / image_name(3), format="PNG")
    with caplog.at_level("WARNING", logger="resnet3d.prepare"):
        result = dataset_stats(root, samples=50, seed=0)  # 3 frames: each read once
    assert result.frames == 2 and result.unreadable == 1 and result.mean[0] == pytest.approx(9 / 255, abs=0.01)
    assert "1 of the frames drawn do not decode" in caplog.text and "c/v/image_00002.jpg: corrupt JPEG" in caplog.text
    (root / "c" / "v" / image_name(1)).write_bytes(b"")
    (root / "c" / "v" / image_name(3)).write_bytes(b"")
    with pytest.raises(UserError, match=r"no readable frame in .*jpg \(first: .*image_00001.jpg: empty file"):
        dataset_stats(root, samples=50, seed=0)


def _official_json_of_one_video(tmp_path: Path, key: str) -> Path:
    """An ActivityNet v1.3 JSON holding one 0.16 s training video, ``key``."""
    official = {"version": "VERSION 1.3", "taxonomy": official_json()["taxonomy"],
                "database": {key: {"subset": "training", "duration": 0.16, "resolution": "64x48", "url": "",
                                   "annotations": [{"segment": [0.0, 0.1], "label": "Drinking coffee"}]}}}
    path = tmp_path / "official.json"
    path.write_text(json.dumps(official))
    return path


def test_activitynet_ids_of_another_length_keep_their_v_prefix(tmp_path):
    """A data set of one's own with ids that are not 11-character YouTube ids, downloaded as the
    official crawler names files (v_<id>.mp4): frames go to v_<id>/, and the fps reaches <id>."""
    videos = tmp_path / "videos"
    write_video(videos / "v_clip_7.mp4", n_frames=4)
    path = _official_json_of_one_video(tmp_path, "clip_7")
    assert cli.main(["prepare", "frames", str(videos), str(tmp_path / "jpg"), "--layout", "activitynet",
                     "--short-side", "32", "--workers", "1"]) == 0
    assert (tmp_path / "jpg" / "v_clip_7" / "n_frames").read_text() == "4"
    out = tmp_path / "activitynet.json"
    assert cli.main(["prepare", "activitynet-json", str(videos), str(path), str(out)]) == 0
    assert json.loads(out.read_text())["database"]["clip_7"]["fps"] == pytest.approx(25.0)


def test_activitynet_json_settles_a_v_name_of_youtube_length(tmp_path):
    """v_ + a 9-character id is 11 characters, like a bare YouTube id: the JSON tells which it is."""
    videos = tmp_path / "videos"
    write_video(videos / "v_a00bC-d_0.mp4", n_frames=4)
    path = _official_json_of_one_video(tmp_path, "a00bC-d_0")
    out = tmp_path / "activitynet.json"
    assert cli.main(["prepare", "activitynet-json", str(videos), str(path), str(out)]) == 0
    assert json.loads(out.read_text())["database"]["a00bC-d_0"]["fps"] == pytest.approx(25.0)
    # and prepare frames placed by the JSON writes the folder training reads, v_<id>
    assert cli.main(["prepare", "frames", str(videos), str(tmp_path / "jpg"), "--annotation", str(path),
                     "--short-side", "32", "--workers", "1"]) == 0
    assert (tmp_path / "jpg" / "v_a00bC-d_0" / "n_frames").read_text() == "4"


def test_folder_json_over_hdf5_files_trains_from_them(tmp_path):
    """ROOT/<class>/<video>.hdf5 (prepare frames --hdf5) is a data set folder-json reads, and the
    data set it writes loads those files with --file_type hdf5."""
    import io

    from resnet3d.data import DataConfig, build_dataset
    from resnet3d.prepare.hdf5 import write_video as write_hdf5

    root = tmp_path / "h5"
    for label, colour in (("red", (250, 0, 0)), ("blue", (0, 0, 250))):
        for video in range(3):
            jpegs = []
            for _ in range(6):
                buffer = io.BytesIO()
                Image.new("RGB", (40, 30), colour).save(buffer, format="JPEG", quality=95)
                jpegs.append(buffer.getvalue())
            (root / label).mkdir(parents=True, exist_ok=True)
            write_hdf5(root / label / f"{label}{video}.hdf5", jpegs)
    line = folder_json(root, tmp_path / "h5.json", val_ratio=0.34, seed=0)
    assert "0 frame folders, 6 video or .hdf5 files" in line
    cfg = DataConfig(video_path=str(root), annotation_path=str(tmp_path / "h5.json"), file_type="hdf5",
                     dataset="folder", sample_size=16, sample_duration=4)
    training = build_dataset(cfg, "training")
    assert training.n_videos == 4 and training.class_names == ["blue", "red"]
    item = training[0]
    assert item["clip"].shape == (4, 16, 16, 3) and item["bad_frames"] == 0
    red = item["clip"][..., 0].float().mean() > 200
    assert bool(red) == (training.videos[0].target == 1)
