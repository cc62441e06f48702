"""Annotation builders on files in the official formats: exact JSON, and errors that name the
file and the line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet3d import cli
from resnet3d.errors import UserError
from resnet3d.prepare.frame_folders import image_name
from resnet3d.prepare.hmdb51 import hmdb51_json
from resnet3d.prepare.kinetics import seed_kinetics_json, successor_kinetics_json
from resnet3d.prepare.ucf101 import ucf101_json


def frames(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(1, n + 1):
        (folder / image_name(index)).write_bytes(b"\xff\xd8 not decoded here")
    return folder


def write(path: Path, text: str, crlf: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((text.replace("\n", "\r\n") if crlf else text).encode())
    return path


TRAIN_CSV = """label,youtube_id,time_start,time_end,split
abseiling,---QUuC4vJs,3,13,train
air drumming,--nQbRBEz2s,104,114,train
abseiling,-3B32lodo2M,59,69,train
"""
VAL_CSV = """label,youtube_id,time_start,time_end,split
air drumming,-5mBkUjEbNE,10,20,val
"""
TEST_CSV = """youtube_id,time_start,time_end,split
-6G3m3D1W5w,0,10,test
"""


@pytest.fixture
def kinetics_csvs(tmp_path):
    d = tmp_path / "csv"
    return (
        write(d / "kinetics-400_train.csv", TRAIN_CSV, crlf=True),
        write(d / "kinetics-400_val.csv", VAL_CSV),
        write(d / "kinetics-400_test.csv", TEST_CSV),
    )


def test_kinetics_seed_form_exact_json(kinetics_csvs, tmp_path):
    out = tmp_path / "kinetics.json"
    seed_kinetics_json(*kinetics_csvs, out)
    expected = (
        '{"labels": ["abseiling", "air drumming"], "database": {'
        '"---QUuC4vJs_000003_000013": {"subset": "training", "annotations": {"label": "abseiling"}}, '
        '"--nQbRBEz2s_000104_000114": {"subset": "training", "annotations": {"label": "air drumming"}}, '
        '"-3B32lodo2M_000059_000069": {"subset": "training", "annotations": {"label": "abseiling"}}, '
        '"-5mBkUjEbNE_000010_000020": {"subset": "validation", "annotations": {"label": "air drumming"}}, '
        '"-6G3m3D1W5w_000000_000010": {"subset": "testing", "annotations": {}}}}'
    )
    assert out.read_text() == expected


def test_kinetics_successor_form_adds_segments(kinetics_csvs, tmp_path, capsys):
    frame_dir = tmp_path / "jpg"
    frames(frame_dir / "abseiling" / "---QUuC4vJs_000003_000013", 5)
    frames(frame_dir / "abseiling" / "-3B32lodo2M_000059_000069", 2)
    frames(frame_dir / "air drumming" / "-5mBkUjEbNE_000010_000020", 3)
    frames(frame_dir / "test" / "-6G3m3D1W5w_000000_000010", 4)
    out = tmp_path / "k400.json"
    status = cli.main(["prepare", "kinetics-json", str(tmp_path / "csv"), "400", str(frame_dir), "jpg", str(out)])
    assert status == 0
    database = json.loads(out.read_text())["database"]
    assert database["---QUuC4vJs_000003_000013"]["annotations"] == {"label": "abseiling", "segment": [1, 6]}
    assert database["--nQbRBEz2s_000104_000114"]["annotations"] == {"label": "air drumming"}  # no folder
    assert database["-6G3m3D1W5w_000000_000010"]["annotations"] == {"segment": [1, 5]}
    report = capsys.readouterr().out
    assert "training 3 (2 with frames, 1 missing on disk)" in report
    assert "validation 1 (1 with frames, 0 missing on disk)" in report


def test_kinetics_successor_form_names_folders_whose_frames_are_named_otherwise(kinetics_csvs, tmp_path, capsys):
    """Frames of another tool (img_00001.jpg) are not counted: the folder is not 'with frames'."""
    frame_dir = tmp_path / "jpg"
    frames(frame_dir / "abseiling" / "---QUuC4vJs_000003_000013", 5)
    other = frame_dir / "abseiling" / "-3B32lodo2M_000059_000069"
    other.mkdir(parents=True)
    (other / "img_00001.jpg").write_bytes(b"\xff\xd8 not decoded here")
    out = tmp_path / "k400.json"
    assert cli.main(["prepare", "kinetics-json", str(tmp_path / "csv"), "400", str(frame_dir), "jpg", str(out)]) == 0
    assert json.loads(out.read_text())["database"]["-3B32lodo2M_000059_000069"]["annotations"]["segment"] == [1, 1]
    report = capsys.readouterr().out
    assert "training 3 (1 with frames, 1 missing on disk, 1 with no frame)" in report
    assert f"e.g. {other}: extract them with 'resnet3d prepare frames', or rename the frames image_%05d.jpg" in report


def test_kinetics_successor_form_reads_deepminds_2020_file_names(tmp_path):
    """kinetics700_2020/{train,validate,test}.csv (no is_cc column), here with a BOM and CRLF."""
    csv_dir = tmp_path / "kinetics700_2020"
    bom = "\ufeff"
    write(csv_dir / "train.csv", bom + TRAIN_CSV, crlf=True)
    write(csv_dir / "validate.csv", bom + VAL_CSV, crlf=True)
    write(csv_dir / "test.csv", TEST_CSV)
    frame_dir = tmp_path / "jpg"
    frames(frame_dir / "abseiling" / "---QUuC4vJs_000003_000013", 5)
    out = tmp_path / "k700.json"
    assert cli.main(["prepare", "kinetics-json", str(csv_dir), "700", str(frame_dir), "jpg", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["labels"] == ["abseiling", "air drumming"]
    assert written["database"]["---QUuC4vJs_000003_000013"]["annotations"] == {"label": "abseiling", "segment": [1, 6]}
    assert written["database"]["-5mBkUjEbNE_000010_000020"]["subset"] == "validation"
    assert written["database"]["-6G3m3D1W5w_000000_000010"]["subset"] == "testing"


def test_kinetics_successor_form_hdf5(kinetics_csvs, tmp_path):
    pytest.importorskip("h5py")
    from resnet3d.prepare.hdf5 import write_video

    frame_dir = tmp_path / "h5"
    (frame_dir / "abseiling").mkdir(parents=True)
    write_video(frame_dir / "abseiling" / "---QUuC4vJs_000003_000013.hdf5", [b"a", b"b", b"c", b"d"])
    out = tmp_path / "k.json"
    successor_kinetics_json(tmp_path / "csv", 400, frame_dir, "hdf5", out)
    database = json.loads(out.read_text())["database"]
    assert database["---QUuC4vJs_000003_000013"]["annotations"]["segment"] == [0, 4]  # the successor's HDF5 form


def test_kinetics_errors_name_file_and_line(tmp_path, kinetics_csvs):
    train, val, test = kinetics_csvs
    out = tmp_path / "k.json"
    bad = write(tmp_path / "bad.csv", "label,youtube_id,time_start,split\nabseiling,x,1,train\n")
    with pytest.raises(UserError, match=r"bad.csv: line 1: missing column\(s\) 'time_end'"):
        seed_kinetics_json(bad, val, test, out)
    unknown = write(tmp_path / "val.csv", VAL_CSV + "yodelling,abcdefghijk,0,10,val\n")
    with pytest.raises(UserError, match=r"val.csv: line 3: validation label 'yodelling' does not appear"):
        seed_kinetics_json(train, unknown, test, out)
    twice = write(tmp_path / "dup.csv", VAL_CSV.replace("air drumming,-5mBkUjEbNE", "abseiling,---QUuC4vJs").replace(",10,20,", ",3,13,"))
    with pytest.raises(UserError, match=r"dup.csv: line 2: duplicate video key '---QUuC4vJs_000003_000013'.*kinetics-400_train.csv: line 2"):
        seed_kinetics_json(train, twice, test, out)
    assert not out.exists()
    same = write(tmp_path / "same.csv", TRAIN_CSV + "abseiling,---QUuC4vJs,3,13,train\n")
    assert "1 repeated identical lines ignored" in seed_kinetics_json(same, val, test, out)


@pytest.mark.parametrize("action", [None, "frames", "kinetics-json", "activitynet-json", "ucf101-json",
                                    "hmdb51-json", "mit-json", "folder-json", "n-frames", "fps", "stats"])
def test_every_action_has_help(action, capsys):
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["prepare"] + ([action] if action else []) + ["--help"])
    assert exit_status.value.code == 0
    assert "usage: resnet3d prepare" in capsys.readouterr().out


def test_kinetics_json_argument_count(capsys):
    assert cli.main(["prepare", "kinetics-json", "a", "b", "c"]) == 2
    assert "takes 4 arguments" in capsys.readouterr().err


UCF_CLASSES = "1 ApplyEyeMakeup\n2 Archery\n"
UCF_TRAIN = "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g08_c01.avi 2\n"
UCF_TEST = "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n"


def test_ucf101_crlf_lists_exact_json(tmp_path):
    notes = tmp_path / "ucfTrainTestlist"
    write(notes / "classInd.txt", UCF_CLASSES, crlf=True)
    for split in (1, 2, 3):
        write(notes / f"trainlist0{split}.txt", UCF_TRAIN, crlf=True)
        write(notes / f"testlist0{split}.txt", UCF_TEST, crlf=True)
    frame_dir = tmp_path / "jpg"
    frames(frame_dir / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01", 3)
    frames(frame_dir / "Archery" / "v_Archery_g08_c01", 1)
    ucf101_json(notes, frame_dir, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ucf101_01.json", "ucf101_02.json", "ucf101_03.json"]
    expected = (
        '{"labels": ["ApplyEyeMakeup", "Archery"], "database": {'
        '"v_ApplyEyeMakeup_g08_c01": {"subset": "training", "annotations": {"label": "ApplyEyeMakeup", "segment": [1, 4]}}, '
        '"v_Archery_g08_c01": {"subset": "training", "annotations": {"label": "Archery", "segment": [1, 2]}}, '
        '"v_ApplyEyeMakeup_g01_c01": {"subset": "validation", "annotations": {"label": "ApplyEyeMakeup"}}}}'
    )
    assert (tmp_path / "out" / "ucf101_02.json").read_text() == expected


def test_ucf101_json_on_hdf5_frames_writes_their_segments(tmp_path):
    """`prepare frames --hdf5` then `prepare ucf101-json`: every video was reported missing on disk
    and the JSONs had no segments."""
    pytest.importorskip("h5py")
    from resnet3d.prepare.hdf5 import write_video

    notes = tmp_path / "ucfTrainTestlist"
    write(notes / "classInd.txt", UCF_CLASSES)
    write(notes / "trainlist01.txt", UCF_TRAIN)
    write(notes / "testlist01.txt", UCF_TEST)
    frame_dir = tmp_path / "h5"
    (frame_dir / "Archery").mkdir(parents=True)
    write_video(frame_dir / "Archery" / "v_Archery_g08_c01.hdf5", [b"a", b"b", b"c"])
    summary = ucf101_json(notes, frame_dir, tmp_path / "out")
    database = json.loads((tmp_path / "out" / "ucf101_01.json").read_text())["database"]
    assert database["v_Archery_g08_c01"]["annotations"]["segment"] == [0, 3]  # the successor's HDF5 form
    assert "training 2 (1 with frames, 1 missing on disk)" in summary


def test_ucf101_errors(tmp_path):
    notes = tmp_path / "notes"
    write(notes / "classInd.txt", UCF_CLASSES, crlf=True)
    write(notes / "trainlist01.txt", UCF_TRAIN + "Yodelling/v_Yodelling_g01_c01.avi 3\n", crlf=True)
    write(notes / "testlist01.txt", UCF_TEST)
    with pytest.raises(UserError, match=r"trainlist01.txt: line 3: class 'Yodelling' is not in classInd.txt"):
        ucf101_json(notes, tmp_path, tmp_path / "out")
    write(notes / "trainlist01.txt", "Archery/v_Archery_g08_c01.avi 1\n")
    with pytest.raises(UserError, match=r"trainlist01.txt: line 1: class index '1' does not match 'Archery'"):
        ucf101_json(notes, tmp_path, tmp_path / "out")
    write(notes / "trainlist01.txt", UCF_TRAIN)
    write(notes / "testlist01.txt", "Archery/v_Archery_g08_c01.avi\n")
    with pytest.raises(UserError, match=r"testlist01.txt: line 1: duplicate video key 'v_Archery_g08_c01'"):
        ucf101_json(notes, tmp_path, tmp_path / "out")


def test_ucf101_lists_of_your_own_may_name_classes_and_videos_with_spaces(tmp_path):
    """`prepare frames` takes a class folder 'Apply EyeMakeup'; its classInd.txt line
    '1 Apply EyeMakeup' was refused as not '<index> <class name>'."""
    notes = tmp_path / "notes"
    write(notes / "classInd.txt", "1 Apply EyeMakeup\n2 Archery\n", crlf=True)
    write(notes / "trainlist01.txt", "Apply EyeMakeup/v_apply 1.avi 1\nArchery/v_Archery_g08_c01.avi 2\n", crlf=True)
    write(notes / "testlist01.txt", "Apply EyeMakeup/v_apply 2.avi\nArchery/v_Archery_g01_c01.avi 2\n")
    frames(tmp_path / "jpg" / "Apply EyeMakeup" / "v_apply 1", 2)
    ucf101_json(notes, tmp_path / "jpg", tmp_path / "out")
    written = json.loads((tmp_path / "out" / "ucf101_01.json").read_text())
    assert written["labels"] == ["Apply EyeMakeup", "Archery"]
    assert written["database"]["v_apply 1"] == {"subset": "training",
                                                "annotations": {"label": "Apply EyeMakeup", "segment": [1, 3]}}
    assert written["database"]["v_apply 2"]["subset"] == "validation"
    write(notes / "trainlist01.txt", "Apply EyeMakeup/v_apply 1.avi\n")
    with pytest.raises(UserError, match=r"line 1: expected '<class>/<video>.avi <class index>'"):
        ucf101_json(notes, tmp_path / "jpg", tmp_path / "out2")


def test_ucf101_json_with_the_frame_folder_one_level_off_writes_nothing(tmp_path):
    """`prepare ucf101-json ucfTrainTestlist ucf101 out/` with the frames in ucf101/jpg wrote
    three JSONs of 'missing on disk' videos and exited 0; the fixed rerun then needed --overwrite.
    The videos themselves (for --file_type video) count as there."""
    notes = tmp_path / "notes"
    write(notes / "classInd.txt", UCF_CLASSES)
    write(notes / "trainlist01.txt", UCF_TRAIN)
    write(notes / "testlist01.txt", UCF_TEST)
    frames(tmp_path / "ucf101" / "jpg" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01", 2)
    with pytest.raises(UserError, match=r"none of the 3 videos the split files list has frames under .*ucf101 "
                                        r"\(looked for e.g. .*v_ApplyEyeMakeup_g08_c01\); they are one level deeper: "
                                        r"give .*ucf101/jpg$"):
        ucf101_json(notes, tmp_path / "ucf101", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    ucf101_json(notes, tmp_path / "ucf101" / "jpg", tmp_path / "out")  # one found is enough
    videos = tmp_path / "UCF-101" / "ApplyEyeMakeup"
    videos.mkdir(parents=True)
    (videos / "v_ApplyEyeMakeup_g08_c01.avi").write_bytes(b"a video")
    ucf101_json(notes, tmp_path / "UCF-101", tmp_path / "out_videos")
    assert (tmp_path / "out_videos" / "ucf101_01.json").exists()


def test_ucf101_a_bad_split_writes_no_json(tmp_path):
    """Split 2 lacks its test list: before, ucf101_01.json was written and then the command failed."""
    notes = tmp_path / "notes"
    write(notes / "classInd.txt", UCF_CLASSES)
    for split in (1, 2):
        write(notes / f"trainlist0{split}.txt", UCF_TRAIN)
    write(notes / "testlist01.txt", UCF_TEST)
    with pytest.raises(UserError, match=r"testlist02.txt: file not found"):
        ucf101_json(notes, tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_hmdb51_split_files_exact_json(tmp_path):
    splits = tmp_path / "testTrainMulti_7030_splits"
    write(splits / "brush_hair_test_split1.txt",
          "April_09_brush_my_hair_babe_ls_0.avi 1 \nAussie_Brush_hair_brush_h_nm_np1_ba_goo_0.avi 2 \nunused_0.avi 0 \n", crlf=True)
    write(splits / "cartwheel_test_split1.txt", "Cartwheel_girl_cartwheel_f_cm_np1_le_med_0.avi 1 \n")
    write(splits / "brush_hair_test_split2.txt", "April_09_brush_my_hair_babe_ls_0.avi 2 \n")
    write(splits / "cartwheel_test_split2.txt", "Cartwheel_girl_cartwheel_f_cm_np1_le_med_0.avi 1 \n")
    (splits / "README").write_text("not a split file")
    frame_dir = tmp_path / "jpg"
    frames(frame_dir / "brush_hair" / "April_09_brush_my_hair_babe_ls_0", 2)
    hmdb51_json(splits, frame_dir, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["hmdb51_1.json", "hmdb51_2.json"]
    expected = (
        '{"labels": ["brush_hair", "cartwheel"], "database": {'
        '"April_09_brush_my_hair_babe_ls_0": {"subset": "training", "annotations": {"label": "brush_hair", "segment": [1, 3]}}, '
        '"Aussie_Brush_hair_brush_h_nm_np1_ba_goo_0": {"subset": "validation", "annotations": {"label": "brush_hair"}}, '
        '"Cartwheel_girl_cartwheel_f_cm_np1_le_med_0": {"subset": "training", "annotations": {"label": "cartwheel"}}}}'
    )
    assert (tmp_path / "out" / "hmdb51_1.json").read_text() == expected
    write(splits / "cartwheel_test_split2.txt", "Cartwheel_girl_cartwheel_f_cm_np1_le_med_0.avi 3 \n")
    with pytest.raises(UserError, match=r"cartwheel_test_split2.txt: line 1: expected '<video>.avi <0, 1 or 2>'"):
        hmdb51_json(splits, frame_dir, tmp_path / "out")


def test_kinetics_pipeline_from_unsorted_downloads(kinetics_csvs, tmp_path, capsys):
    """Split folders of <key>.mp4 files (no class folders): the annotation places each video."""
    from prepare_videos import write_video

    seed_json = tmp_path / "seed.json"
    seed_kinetics_json(*kinetics_csvs, seed_json)
    videos = tmp_path / "downloads"
    write_video(videos / "train" / "---QUuC4vJs_000003_000013.mp4", n_frames=3)
    write_video(videos / "train" / "--nQbRBEz2s_000104_000114.mp4", n_frames=2)
    write_video(videos / "val" / "-5mBkUjEbNE_000010_000020.mp4", n_frames=4)
    write_video(videos / "test" / "-6G3m3D1W5w.mp4", n_frames=2)  # named by the bare YouTube id
    write_video(videos / "train" / "not_in_the_csv.mp4", n_frames=2)
    frame_dir = tmp_path / "jpg"
    assert cli.main(["prepare", "frames", str(videos), str(frame_dir), "--annotation", str(seed_json),
                     "--short-side", "32", "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "4 done" in out and "1 video not in the annotation ignored" in out
    assert "1 annotated video not found" in out  # -3B32lodo2M has no video
    out_json = tmp_path / "k.json"
    successor_kinetics_json(tmp_path / "csv", 400, frame_dir, "jpg", out_json)
    database = json.loads(out_json.read_text())["database"]
    assert database["---QUuC4vJs_000003_000013"]["annotations"]["segment"] == [1, 4]
    assert database["--nQbRBEz2s_000104_000114"]["annotations"]["segment"] == [1, 3]
    assert database["-5mBkUjEbNE_000010_000020"]["annotations"]["segment"] == [1, 5]
    assert database["-6G3m3D1W5w_000000_000010"]["annotations"] == {"segment": [1, 3]}
    assert "segment" not in database["-3B32lodo2M_000059_000069"]["annotations"]


def test_hmdb51_a_bad_split_writes_no_json(tmp_path):
    splits = tmp_path / "splits"
    for label in ("brush_hair", "cartwheel"):
        write(splits / f"{label}_test_split1.txt", f"{label}_a_0.avi 1 \n{label}_b_0.avi 2 \n")
    write(splits / "brush_hair_test_split2.txt", "brush_hair_a_0.avi 2 \nbrush_hair_b_0.avi 1 \n")
    # split 2 lacks cartwheel's file: its JSON would hold no cartwheel video at all
    with pytest.raises(UserError, match=r"split 2 has no file for 1 of the 2 classes \(e.g. cartwheel_test_split2.txt\)"):
        hmdb51_json(splits, tmp_path, tmp_path / "out")
    write(splits / "cartwheel_test_split2.txt", "cartwheel_a_0.avi 7 \n")
    with pytest.raises(UserError, match=r"cartwheel_test_split2.txt: line 1"):
        hmdb51_json(splits, tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # split 1 was fine, but nothing is written


def test_json_builders_replace_an_existing_file_only_with_overwrite(kinetics_csvs, tmp_path, capsys):
    """CONTRIBUTING: no user file is overwritten without a flag. A refused run writes nothing."""
    notes = tmp_path / "ucfTrainTestlist"
    write(notes / "classInd.txt", UCF_CLASSES)
    write(notes / "trainlist01.txt", UCF_TRAIN)
    write(notes / "testlist01.txt", UCF_TEST)
    splits = tmp_path / "splits"
    write(splits / "brush_hair_test_split1.txt", "a_0.avi 1 \n")
    out = tmp_path / "out"
    frames(tmp_path / "jpg" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01", 1)  # (a split with no video there is refused)
    frames(tmp_path / "jpg" / "brush_hair" / "a_0", 1)
    kinetics = tmp_path / "kinetics.json"
    runs = {
        str(kinetics): ["kinetics-json", *map(str, kinetics_csvs), str(kinetics)],
        str(out / "ucf101_01.json"): ["ucf101-json", str(notes), str(tmp_path / "jpg"), str(out)],
        str(out / "hmdb51_1.json"): ["hmdb51-json", str(splits), str(tmp_path / "jpg"), str(out)],
    }
    for target, argv in runs.items():
        assert cli.main(["prepare", *argv]) == 0
        Path(target).write_text("my own notes")
        assert cli.main(["prepare", *argv]) == 2
        err = capsys.readouterr().err
        assert f"{target} already exists: pass --overwrite to replace it" in err, err
        assert Path(target).read_text() == "my own notes"
        assert cli.main(["prepare", *argv, "--overwrite"]) == 0
        assert json.loads(Path(target).read_text())["labels"]


def test_kinetics_successor_form_names_class_folders_spelt_otherwise_than_their_labels(tmp_path, capsys):
    """mmaction's rename_classnames writes 'passing_American_football_-in_game-' for the label
    'passing American football (in game)': the missing videos are found there and the fix named."""
    from PIL import Image

    write(tmp_path / "csv" / "kinetics-400_train.csv", "label,youtube_id,time_start,time_end,split\n"
          '"passing American football (in game)",aaaaaaaaaaa,1,11,train\n'
          '"passing American football (in game)",bbbbbbbbbbb,2,12,train\n'
          "air drumming,ccccccccccc,3,13,train\n"
          "abseiling,ddddddddddd,4,14,train\n")
    write(tmp_path / "csv" / "kinetics-400_val.csv", "label,youtube_id,time_start,time_end,split\n"
          "air drumming,eeeeeeeeeee,5,15,val\n")
    frame_dir = tmp_path / "jpg"
    for folder, key in (("passing_American_football_-in_game-", "aaaaaaaaaaa_000001_000011"),
                        ("passing_American_football_-in_game-", "bbbbbbbbbbb_000002_000012"),
                        ("air_drumming", "ccccccccccc_000003_000013"),
                        ("air_drumming", "eeeeeeeeeee_000005_000015"),
                        ("abseiling", "ddddddddddd_000004_000014")):
        (frame_dir / folder / key).mkdir(parents=True)
        for index in (1, 2):
            Image.new("RGB", (8, 6), (200, 0, 0)).save(frame_dir / folder / key / image_name(index), format="JPEG")
    out = tmp_path / "ku.json"
    assert cli.main(["prepare", "kinetics-json", str(tmp_path / "csv"), "400", str(frame_dir), "jpg", str(out)]) == 0
    report = capsys.readouterr().out
    assert "training 4 (1 with frames, 3 missing on disk)" in report
    assert ("4 of the missing videos are on disk in 2 class folders spelt otherwise than their label ('air_drumming' for "
            "'air drumming', 'passing_American_football_-in_game-' for 'passing American football (in game)'): training "
            f"looks in {frame_dir}/<label>/<key>") in report
    assert f"(mv '{frame_dir}/air_drumming' '{frame_dir}/air drumming') and run this command again" in report
    # the fix, done: every video has its segment and nothing more is said
    (frame_dir / "air_drumming").rename(frame_dir / "air drumming")
    (frame_dir / "passing_American_football_-in_game-").rename(frame_dir / "passing American football (in game)")
    assert cli.main(["prepare", "kinetics-json", str(tmp_path / "csv"), "400", str(frame_dir), "jpg", str(out),
                     "--overwrite"]) == 0
    report = capsys.readouterr().out
    assert "training 4 (4 with frames, 0 missing on disk)" in report and "spelt otherwise" not in report


@pytest.mark.parametrize("pattern", ["image_{:04d}.jpg", "image_{:06d}.jpg", "image_{:05d}.JPG", "image_{:05d}.jpeg"])
def test_kinetics_successor_form_does_not_count_frames_training_cannot_read(kinetics_csvs, tmp_path, capsys, pattern):
    """The successor's count takes every 'image*' name; a folder of image_0001.jpg or .JPG frames
    was 'with frames' although training reads none of them."""
    from PIL import Image

    frame_dir = tmp_path / "jpg"
    frames(frame_dir / "abseiling" / "---QUuC4vJs_000003_000013", 5)
    other = frame_dir / "abseiling" / "-3B32lodo2M_000059_000069"
    other.mkdir(parents=True)
    for index in (1, 2, 3):
        Image.new("RGB", (8, 6), (0, 200, 0)).save(other / pattern.format(index), format="JPEG")
    out = tmp_path / "k400.json"
    assert cli.main(["prepare", "kinetics-json", str(tmp_path / "csv"), "400", str(frame_dir), "jpg", str(out)]) == 0
    assert json.loads(out.read_text())["database"]["-3B32lodo2M_000059_000069"]["annotations"]["segment"] == [1, 4]
    report = capsys.readouterr().out
    assert "training 3 (1 with frames, 1 missing on disk, 1 with no frame)" in report
    assert f"e.g. {other}: extract them with 'resnet3d prepare frames', or rename the frames image_%05d.jpg" in report
