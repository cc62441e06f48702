"""folder-json on layouts it does not read: every video, frame folder and class folder it passes
over is named with the fix, and a class that would vanish is an error (real MP4s and JPEGs)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from prepare_videos import write_video
from resnet3d import cli
from resnet3d.errors import UserError
from resnet3d.prepare.folder_dataset import folder_json
from resnet3d.prepare.frame_folders import image_name


def frames(folder: Path, n: int = 3, name: str = "image_{:05d}.jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(1, n + 1):
        Image.new("RGB", (8, 6), (index * 40, 0, 0)).save(folder / name.format(index), format="JPEG", quality=95)
    return folder


def audit_layout(root: Path) -> Path:
    """The audit's case: a class one level deeper, a stray subfolder, a loose video."""
    for day, names in (("day1", ("b1", "b2")), ("day2", ("b3",))):
        for name in names:
            write_video(root / "birds" / day / f"{name}.mp4", n_frames=2)
    for name in ("c1", "c2"):
        write_video(root / "cats" / f"{name}.mp4", n_frames=2)
    for name in ("d1", "d2"):
        write_video(root / "dogs" / f"{name}.mp4", n_frames=2)
    write_video(root / "dogs" / "more" / "dogs9.mp4", n_frames=2)
    write_video(root / "loose.mp4", n_frames=2)
    return root


def test_a_class_whose_videos_are_one_level_deeper_is_an_error_naming_it(tmp_path, capsys):
    root = audit_layout(tmp_path / "raw")
    out = tmp_path / "raw.json"
    assert cli.main(["prepare", "folder-json", str(root), str(out)]) == 2
    err = capsys.readouterr().err
    assert f"1 class folder under {root} would be left out of the data set, and its label with it" in err
    assert f"{root}/birds/ holds 3 videos only below its subfolders (e.g. {root}/birds/day1/b1.mp4)" in err
    assert f"move them up into {root}/birds/" in err and "Nothing written" in err
    assert not out.exists()


def test_videos_outside_the_layout_are_counted_with_examples_and_the_fix(tmp_path, capsys):
    root = audit_layout(tmp_path / "raw")
    for path in (root / "birds").rglob("*.mp4"):
        path.rename(root / "birds" / path.name)  # the fix the error gave
    out = tmp_path / "raw.json"
    assert cli.main(["prepare", "folder-json", str(root), str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"wrote {out}: 3 labels, ")
    assert lines[1] == (f"ignored 1 video directly in ROOT, outside any class folder ({root}/loose.mp4): the layout is "
                        "ROOT/<class>/<video, frame folder or .hdf5 file>; move them into their class folder")
    assert lines[2].startswith(f"ignored 1 video not directly inside a class folder ({root}/dogs/more/dogs9.mp4): "
                               "the layout is ROOT/<class>/")
    assert "move them up into their class folder" in lines[2]
    assert lines[3].startswith(f"ignored 2 folders in class folders holding no frames, videos or .hdf5 files "
                               f"({root}/birds/day1, {root}/birds/day2)")
    data = json.loads(out.read_text())
    assert data["labels"] == ["birds", "cats", "dogs"]
    assert sorted(data["database"]) == ["b1", "b2", "b3", "c1", "c2", "d1", "d2"]
    # a list naming a video that was passed over says why, not merely "not a video"
    listed = tmp_path / "val.txt"
    listed.write_text("dogs/dogs9.mp4\n")
    with pytest.raises(UserError, match=r"val.txt: line 1: 'dogs/dogs9.mp4' is .*dogs/more/dogs9.mp4, which folder-json "
                                        r"left out: it is not directly inside a class folder"):
        folder_json(root, out, val_list=listed, overwrite=True)


# (file name pattern, what the report quotes): another tool's names, case, extension, zero padding
OTHER_NAMES = [
    ("img_{:05d}.jpg", "named like 'img_00001.jpg'"),
    ("image_{:05d}.JPG", "named like 'image_00001.JPG'"),
    ("image_{:05d}.jpeg", "named like 'image_00001.jpeg'"),
    ("image_{:04d}.jpg", "numbered with 4 digits like 'image_0001.jpg'"),
    ("image_{:06d}.jpg", "numbered with 6 digits like 'image_000001.jpg'"),
]


@pytest.mark.parametrize("pattern, quoted", OTHER_NAMES)
def test_frame_folders_training_cannot_read_are_named_and_left_out(tmp_path, pattern, quoted):
    """Such a folder is neither skipped silently nor (other padding) counted: training would read
    none of its frames. The JSON written holds only what training reads, and it reads all of it."""
    from resnet3d.data import DataConfig, build_dataset

    root = tmp_path / "jpg"
    for label in ("a", "b"):
        frames(root / label / f"{label}1", 4)
        frames(root / label / f"{label}2", 4)
    frames(root / "a" / "other", 4, name=pattern)
    out = tmp_path / "mine.json"
    report = folder_json(root, out, val_ratio=0.5, seed=0)
    assert "4 frame folders, 0 video or .hdf5 files" in report
    what = "numbered with other than 5 digits" if "digits" in quoted else "not named image_00001.jpg, image_00002.jpg, ..."
    line = report.splitlines()[1]
    assert line.startswith(f"ignored 1 frame folder whose frames are {what}, which training cannot read: {root}/a/other: ")
    assert quoted in line and "resnet3d prepare frames" in line
    assert "other" not in json.loads(out.read_text())["database"]
    cfg = DataConfig(video_path=str(root), annotation_path=str(out), dataset="folder", sample_size=4, sample_duration=4)
    training = build_dataset(cfg, "training")
    assert training.n_videos == 2
    assert all(training[i]["bad_frames"] == 0 for i in range(training.n_videos))


@pytest.mark.parametrize("pattern, quoted", OTHER_NAMES)
def test_a_class_of_frame_folders_training_cannot_read_is_an_error(tmp_path, capsys, pattern, quoted):
    root = tmp_path / "jpg"
    frames(root / "a" / "a1")
    frames(root / "b" / "b1", name=pattern)
    frames(root / "b" / "b2", name=pattern)
    out = tmp_path / "mine.json"
    assert cli.main(["prepare", "folder-json", str(root), str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{root}/b/ holds 2 frame folders whose frames training cannot read (e.g. {root}/b/b1: " in err
    assert quoted in err and "Nothing written" in err
    assert "no videos, frame folders" not in err and not out.exists()


def test_a_data_set_of_mmaction_frame_names_is_not_called_empty(tmp_path):
    """Every folder in img_00001.jpg (mmaction/TSN): the error says so instead of 'no frame folders'."""
    root = tmp_path / "rawframes"
    for label in ("jump", "run"):
        frames(root / label / f"{label}1", name="img_{:05d}.jpg")
    with pytest.raises(UserError, match=r"2 class folders .* would be left out .*jump/ holds 1 frame folder whose frames "
                                        r"training cannot read .*named like 'img_00001.jpg'.*run/ holds 1 frame folder"):
        folder_json(root, tmp_path / "o.json")


def test_root_one_level_too_deep_says_so(tmp_path):
    frames(tmp_path / "jpg" / "cats" / "v1")
    with pytest.raises(UserError, match=r"ROOT holds frame folders directly \(e.g. .*cats/v1\): if ROOT is one class's "
                                        r"folder, give the folder above it"):
        folder_json(tmp_path / "jpg" / "cats", tmp_path / "o.json")


def test_empty_class_folders_are_named(tmp_path):
    frames(tmp_path / "jpg" / "cats" / "v1")
    (tmp_path / "jpg" / "dogs").mkdir()
    report = folder_json(tmp_path / "jpg", tmp_path / "o.json")
    assert report.splitlines()[1].startswith(f"ignored 1 class folder holding nothing to read ({tmp_path}/jpg/dogs): "
                                             "their labels are not in the JSON")
    assert json.loads((tmp_path / "o.json").read_text())["labels"] == ["cats"]


def test_optical_flow_folders_are_frame_folders(tmp_path):
    """<key>/u/ + <key>/v/ and flow_x_/flow_y_ files, the two flow layouts training reads."""
    root = tmp_path / "flow"
    frames(root / "wave" / "w1" / "u", 5)
    frames(root / "wave" / "w1" / "v", 5)
    frames(root / "wave" / "w2", 3, name="flow_x_{:05d}.jpg")
    frames(root / "wave" / "w2", 3, name="flow_y_{:05d}.jpg")
    out = tmp_path / "flow.json"
    report = folder_json(root, out, val_ratio=0)
    assert report.splitlines() == [report.splitlines()[0]]  # nothing ignored
    database = json.loads(out.read_text())["database"]
    assert database["w1"]["annotations"]["segment"] == [1, 6]
    assert database["w2"]["annotations"]["segment"] == [1, 4]
    assert image_name(1) == "image_00001.jpg"


def test_a_stray_picture_does_not_turn_a_folder_of_videos_into_a_frame_folder(tmp_path):
    """A thumbnail beside the videos of a class, or of a subfolder, changes nothing."""
    root = tmp_path / "raw"
    write_video(root / "cats" / "c1.mp4", n_frames=2)
    Image.new("RGB", (8, 6)).save(root / "cats" / "cover.jpg")
    write_video(root / "dogs" / "d1.mp4", n_frames=2)
    write_video(root / "dogs" / "more" / "d2.mp4", n_frames=2)
    Image.new("RGB", (8, 6)).save(root / "dogs" / "more" / "thumbnail.png")
    report = folder_json(root, tmp_path / "o.json")
    assert json.loads((tmp_path / "o.json").read_text())["labels"] == ["cats", "dogs"]
    assert report.splitlines()[1].startswith(f"ignored 1 video not directly inside a class folder ({root}/dogs/more/d2.mp4)")
