"""``prepare mit-json``: Moments in Time's official files (no header, odd file names, a BOM and
CRLF) and real JPEG frame folders -> the JSON the successor's ``util_scripts/mit_json.py``
writes; the errors name the file, the line and the fix."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from resnet3d import cli
from resnet3d.errors import UserError
from resnet3d.prepare.frame_folders import image_name
from resnet3d.prepare.mit import mit_json

CATEGORIES = "adult+female+singing,0\nclapping,1\nblocking,2\n"
# label/file.mp4,label,agreement,disagreement: '+', '&', "'", spaces, brackets, dots and a
# quoted comma in the file names
TRAINING = (
    "blocking/getty-karate-video-id635808620_4.mp4,blocking,3,0\n"
    "adult+female+singing/yt-a+b_C (1)&x'y.mp4,adult+female+singing,2,1\n"
    "clapping/flickr-2-3-4-5-678.9.mp4,clapping,3,0\n"
    '"clapping/comma,name [2].mp4",clapping,4,0\n'
)
VALIDATION = (
    "clapping/yt-Val_clap+1.mp4,clapping,3,1\n"
    "\n"
    "adult+female+singing/meta-0f+not-extracted.mp4,adult+female+singing,2,0\n"
)
TESTING = "test-video-0001.mp4\n"

FRAMES = {  # folder under FRAME_DIR -> frames in it
    "blocking/getty-karate-video-id635808620_4": 3,
    "adult+female+singing/yt-a+b_C (1)&x'y": 5,
    "clapping/flickr-2-3-4-5-678.9": 2,
    "clapping/comma,name [2]": 4,
    "clapping/yt-Val_clap+1": 6,
    "test/test-video-0001": 1,
}


def jpeg(index: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (index * 30 % 256, 90, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def frame_folder(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    for index in range(1, n + 1):
        (folder / image_name(index)).write_bytes(jpeg(index))


def write(path: Path, text: str, crlf: bool = False, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = text.replace("\n", "\r\n") if crlf else text
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


@pytest.fixture
def mit(tmp_path):
    """(ANNOTATION_DIR, FRAME_DIR) of a small Moments_in_Time_Raw with extracted frames."""
    raw = tmp_path / "Moments_in_Time_Raw"
    write(raw / "moments_categories.txt", CATEGORIES, crlf=True, bom=True)
    write(raw / "trainingSet.csv", TRAINING, crlf=True, bom=True)
    write(raw / "validationSet.csv", VALIDATION)
    write(raw / "testingSet.csv", TESTING, crlf=True)
    frame_dir = tmp_path / "jpg"
    for folder, n in FRAMES.items():
        frame_folder(frame_dir / folder, n)
    return raw, frame_dir


def test_the_successors_json_but_a_video_without_frames_gets_no_segment(mit, tmp_path, capsys):
    """The successor's command line, with ``python -m util_scripts.mit_json`` replaced; the
    expected file written by hand from its rules: labels in moments_categories.txt's order, key =
    the file name less its last suffix (its ``Path.stem``: ``flickr-2-3-4-5-678.9.mp4`` ->
    ``flickr-2-3-4-5-678.9``, the successor's key too), segment [1, n_frames + 1] from
    FRAME_DIR/<label or test>/<key>, json.dump's formatting.

    It differs from the successor's output in one entry only: ``meta-0f+not-extracted`` has no
    frame folder, so it gets no segment and the summary counts it as missing, where the
    successor's script stopped with FileNotFoundError and wrote nothing. With that folder made,
    the successor's script (run once beside this test, pandas 3.1.1) wrote the same bytes as
    ``prepare mit-json``."""
    raw, frame_dir = mit
    out = tmp_path / "mit.json"
    assert cli.main(["prepare", "mit-json", str(raw), str(frame_dir), str(out)]) == 0
    expected = {
        "labels": ["adult+female+singing", "clapping", "blocking"],
        "database": {
            "getty-karate-video-id635808620_4": {"subset": "training",
                                                 "annotations": {"label": "blocking", "segment": [1, 4]}},
            "yt-a+b_C (1)&x'y": {"subset": "training",
                                 "annotations": {"label": "adult+female+singing", "segment": [1, 6]}},
            "flickr-2-3-4-5-678.9": {"subset": "training", "annotations": {"label": "clapping", "segment": [1, 3]}},
            "comma,name [2]": {"subset": "training", "annotations": {"label": "clapping", "segment": [1, 5]}},
            "yt-Val_clap+1": {"subset": "validation", "annotations": {"label": "clapping", "segment": [1, 7]}},
            # no folder on disk: no segment (the successor stopped here with an error)
            "meta-0f+not-extracted": {"subset": "validation", "annotations": {"label": "adult+female+singing"}},
            "test-video-0001": {"subset": "testing", "annotations": {"segment": [1, 2]}},
        },
    }
    assert out.read_text() == json.dumps(expected)  # json.dump's default formatting, this order
    report = capsys.readouterr().out.strip()
    assert report == (
        f"wrote {out}: 3 labels, training 4 (4 with frames, 0 missing on disk), validation 2 (1 with frames, "
        f"1 missing on disk), testing 1 (1 with frames, 0 missing on disk); missing e.g. "
        f"{frame_dir / 'adult+female+singing' / 'meta-0f+not-extracted'}"
    )


def test_without_a_testing_csv_and_with_hdf5_files(mit, tmp_path):
    """testingSet.csv is optional; a video's .hdf5 file (prepare frames --hdf5) gives the
    successor's HDF5 segment [0, n], found by itself or asked for with --file-type hdf5."""
    pytest.importorskip("h5py")
    from resnet3d.prepare.hdf5 import write_video

    raw, _ = mit
    (raw / "testingSet.csv").unlink()
    h5 = tmp_path / "h5"
    (h5 / "clapping").mkdir(parents=True)
    write_video(h5 / "clapping" / "yt-Val_clap+1.hdf5", [jpeg(i) for i in range(7)])
    for file_type in ("auto", "hdf5"):
        out = tmp_path / f"{file_type}.json"
        assert cli.main(["prepare", "mit-json", str(raw), str(h5), str(out), "--file_type", file_type]) == 0
        database = json.loads(out.read_text())["database"]
        assert database["yt-Val_clap+1"]["annotations"] == {"label": "clapping", "segment": [0, 7]}
        assert "segment" not in database["flickr-2-3-4-5-678.9"]["annotations"]
        assert not any(entry["subset"] == "testing" for entry in database.values())
    out = tmp_path / "jpg.json"
    assert cli.main(["prepare", "mit-json", str(raw), str(h5), str(out), "--file-type", "jpg"]) == 0
    assert "segment" not in json.loads(out.read_text())["database"]["yt-Val_clap+1"]["annotations"]


def test_an_existing_output_is_replaced_only_with_overwrite(mit, tmp_path, capsys):
    raw, frame_dir = mit
    out = tmp_path / "mit.json"
    out.write_text("my own notes")
    assert cli.main(["prepare", "mit-json", str(raw), str(frame_dir), str(out)]) == 2
    assert f"OUT_JSON {out} already exists: pass --overwrite to replace it" in capsys.readouterr().err
    assert out.read_text() == "my own notes"
    assert cli.main(["prepare", "mit-json", str(raw), str(frame_dir), str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["labels"][0] == "adult+female+singing"


BAD_ROWS = [
    ("trainingSet.csv", "clapping/x.mp4\n", r"line 5: expected '<label>/<file>.mp4,<label>,<agreement>,<disagreement>', "
                                            r"got 1 field\(s\): 'clapping/x.mp4'"),
    ("trainingSet.csv", "x.mp4,clapping,3,0\n", r"line 5: 'x.mp4' has no class folder"),
    ("trainingSet.csv", "clapping/,clapping,3,0\n", r"line 5: no video file name in 'clapping/'"),
    ("trainingSet.csv", "clapping/x.mp4,,3,0\n", r"line 5: empty label"),
    ("trainingSet.csv", "clapping/x.mp4,clapping,three,0\n", r"line 5: agreement/disagreement 'three' is not a number"),
    ("trainingSet.csv", "clapping/x.mp4,blocking,3,0\n",
     r"line 5: the video's folder 'clapping' is not its label 'blocking'.*correct the line"),
    ("trainingSet.csv", "yodelling/y.mp4,yodelling,3,0\n",
     r"line 5: label 'yodelling' is not in .*moments_categories.txt; check that the CSVs and moments_categories.txt "
     r"come from the same Moments in Time release"),
    ("validationSet.csv", "blocking/flickr-2-3-4-5-678.9.mp4,blocking,3,0\n",
     r"validationSet.csv: line 4: duplicate video key 'flickr-2-3-4-5-678.9' \(validation, label 'blocking'\); "
     r".*trainingSet.csv: line 3 already listed it \(training, label 'clapping'\); remove one of the two lines"),
    ("testingSet.csv", ",x\n", r"testingSet.csv: line 2: empty video file name"),
    ("moments_categories.txt", "clapping,3\n", r"moments_categories.txt: line 4: class 'clapping' listed twice "
                                               r"\(first at .*line 2\)"),
    ("moments_categories.txt", "yodelling,three\n", r"moments_categories.txt: line 4: class index 'three' is not a whole"),
    ("moments_categories.txt", "a,1,2\n", r"moments_categories.txt: line 4: expected '<class name>,<index>'"),
]


@pytest.mark.parametrize("name,row,message", BAD_ROWS)
def test_a_bad_row_is_one_line_naming_the_file_and_the_line_and_nothing_is_written(mit, tmp_path, capsys, name, row,
                                                                                      message):
    raw, frame_dir = mit
    with open(raw / name, "a", encoding="utf-8", newline="") as handle:
        handle.write(row)
    out = tmp_path / "mit.json"
    with pytest.raises(UserError, match=message) as error:
        mit_json(raw, frame_dir, out)
    assert str(raw / name) in str(error.value) and "\n" not in str(error.value)
    assert not out.exists()
    assert cli.main(["prepare", "mit-json", str(raw), str(frame_dir), str(out)]) == 2  # the command: exit status 2
    assert capsys.readouterr().err.startswith("resnet3d prepare: error: ")


def test_missing_files_and_folders_are_named_with_the_fix(mit, tmp_path):
    raw, frame_dir = mit
    out = tmp_path / "mit.json"
    with pytest.raises(UserError, match=r"annotation directory .*nowhere does not exist; give the folder of the Moments "
                                        r"in Time download that holds moments_categories.txt"):
        mit_json(tmp_path / "nowhere", frame_dir, out)
    with pytest.raises(UserError, match=r"frame directory .*no_frames does not exist; extract frames first"):
        mit_json(raw, tmp_path / "no_frames", out)
    for name in ("validationSet.csv", "moments_categories.txt"):
        (raw / name).unlink()
        with pytest.raises(UserError, match=rf"{name}: file not found; ANNOTATION_DIR must hold moments_categories.txt, "
                                            r"trainingSet.csv and validationSet.csv \(testingSet.csv is optional\)"):
            mit_json(raw, frame_dir, out)
    write(raw / "moments_categories.txt", "\n\n")
    write(raw / "validationSet.csv", VALIDATION)
    with pytest.raises(UserError, match=r"moments_categories.txt: no classes listed"):
        mit_json(raw, frame_dir, out)
    assert not out.exists()


def test_categories_without_the_index_column_and_a_subset_of_classes(tmp_path):
    """A moments_categories.txt of one's own may list bare names, or keep the official indices
    of a chosen few classes: the labels are the names in file order either way."""
    raw = tmp_path / "raw"
    write(raw / "moments_categories.txt", "clapping,7\nadult+female+singing,0\nblocking\n")
    write(raw / "trainingSet.csv", "blocking/a.mp4,blocking,3,0\n")
    write(raw / "validationSet.csv", "clapping/b.mp4,clapping\n")  # two columns suffice
    frame_folder(tmp_path / "jpg" / "blocking" / "a", 2)
    out = tmp_path / "mit.json"
    mit_json(raw, tmp_path / "jpg", out)
    written = json.loads(out.read_text())
    assert written["labels"] == ["clapping", "adult+female+singing", "blocking"]
    assert written["database"] == {"a": {"subset": "training", "annotations": {"label": "blocking", "segment": [1, 3]}},
                                   "b": {"subset": "validation", "annotations": {"label": "clapping"}}}
