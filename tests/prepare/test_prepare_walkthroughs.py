"""The data sets as distributed, through the commands of docs/prepare.md: Kinetics downloads in
split folders, UCF-101 and HMDB-51 videos in one flat folder (HMDB's odd file names), and one
FRAME_DIR filled by one run per split folder. Real videos (PyAV), the official list formats."""
from __future__ import annotations

import json
from pathlib import Path

from prepare_videos import write_audio_only, write_video
from resnet3d import cli
from resnet3d.prepare.frames import FAILURES_FILE, LOCK_FILE

KINETICS_HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"


def prepare(*args: str) -> int:
    return cli.main(["prepare", *args])


def test_kinetics_split_folders_are_refused_and_placed_by_the_seed_json(tmp_path, capsys):
    """A Kinetics download laid out as train/<label>/<key>.mp4, val/<label>/..., test/<key>.mp4 read
    train/ and val/ as classes: the test videos were extracted, the others counted as ignored,
    exit status 0. Now it stops, nothing written, and names --annotation, which places them all."""
    videos = tmp_path / "k700-2020"
    label = "passing American football (in game)"
    write_video(videos / "train" / label / "-cEYIiN08Ys_000001_000011.mp4", n_frames=3)
    write_video(videos / "val" / "abseiling" / "--07WQ2iBlw_000011_000021.mp4", n_frames=3)
    write_video(videos / "train" / "abseiling" / "a-b_c1d2e3f_000000_000010.mp4", n_frames=3)
    write_video(videos / "test" / "tEsT1234567_000000_000010.mp4", n_frames=3)
    frames = tmp_path / "jpg"
    assert prepare("frames", str(videos), str(frames), "--no-progress") == 2
    error = capsys.readouterr().err
    assert f"{videos / 'train'}/ holds videos only in its subfolders" in error and "--annotation JSON" in error
    assert "Nothing written" in error and not frames.exists()

    csv = tmp_path / "kinetics700_2020"  # DeepMind's names; the test CSV has no label
    csv.mkdir()
    (csv / "train.csv").write_text(KINETICS_HEADER + f'"{label}",-cEYIiN08Ys,1,11,train,0\n'
                                   "abseiling,a-b_c1d2e3f,0,10,train,0\n")
    (csv / "validate.csv").write_text(KINETICS_HEADER + "abseiling,--07WQ2iBlw,11,21,val,0\n")
    (csv / "test.csv").write_text("youtube_id,time_start,time_end,split\ntEsT1234567,0,10,test\n")
    seed = tmp_path / "seed.json"
    assert prepare("kinetics-json", str(csv / "train.csv"), str(csv / "validate.csv"), str(csv / "test.csv"),
                   str(seed)) == 0
    assert prepare("frames", str(videos), str(frames), "--annotation", str(seed), "--workers", "1",
                   "--no-progress") == 0
    assert "4 done" in capsys.readouterr().out
    for folder in (f"{label}/-cEYIiN08Ys_000001_000011", "abseiling/--07WQ2iBlw_000011_000021",
                   "abseiling/a-b_c1d2e3f_000000_000010", "test/tEsT1234567_000000_000010"):
        assert (frames / folder / "n_frames").read_text() == "3"
    assert not (frames / LOCK_FILE).exists()


def test_split_folders_without_a_test_folder_are_named_not_called_missing(tmp_path, capsys):
    """Only train/<class>/ and val/<class>/: the message said 'no videos in VIDEO_DIR or its subfolders'."""
    write_video(tmp_path / "videos" / "train" / "abseiling" / "a.mp4", n_frames=2)
    assert prepare("frames", str(tmp_path / "videos"), str(tmp_path / "jpg"), "--no-progress") == 2
    error = capsys.readouterr().err
    assert "only deeper" in error and str(tmp_path / "videos" / "train" / "abseiling" / "a.mp4") in error


UCF_CLASSES = (("ApplyEyeMakeup", "ApplyEyeMakeup"), ("HandstandPushups", "HandStandPushups"))


def _ucf101(root: Path) -> Path:
    """The official lists (CRLF, trainlist with class index, testlist without) and a flat folder of
    the videos. UCF-101's class HandstandPushups names its videos v_HandStandPushups_*."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n")
    train, test = [], []
    for index, (label, spelt) in enumerate(UCF_CLASSES, start=1):
        for group in (1, 2, 3):
            name = f"v_{spelt}_g{group:02d}_c01.avi"
            write_video(root / "flat" / name, n_frames=3, codec="mpeg4")
            (test if group == 1 else train).append(f"{label}/{name}" + ("" if group == 1 else f" {index}"))
    (lists / "trainlist01.txt").write_bytes("".join(line + "\r\n" for line in train).encode())
    (lists / "testlist01.txt").write_bytes("".join(line + "\r\n" for line in test).encode())
    return lists


def test_ucf101_in_one_flat_folder_is_placed_by_the_split_files(tmp_path, capsys):
    """--layout ucf101 on loose videos pointed to --layout flat, whose FRAME_DIR/<video>/ folders
    training never finds, and ucf101-json refused a folder of videos. Now the error names the
    route that works, and each step of it does."""
    lists = _ucf101(tmp_path)
    flat, out, frames = tmp_path / "flat", tmp_path / "ucf101", tmp_path / "ucf101" / "jpg"
    assert prepare("frames", str(flat), str(frames), "--layout", "ucf101", "--no-progress") == 2
    error = capsys.readouterr().err
    assert f"resnet3d prepare ucf101-json ANNOTATION_DIR {flat} OUT_DIR" in error and "--layout flat" not in error

    assert prepare("ucf101-json", str(lists), str(flat), str(out)) == 0
    assert f"{flat} holds the videos themselves" in capsys.readouterr().out
    assert prepare("frames", str(flat), str(frames), "--annotation", str(out / "ucf101_01.json"), "--workers", "1",
                   "--no-progress") == 0
    assert (frames / "HandstandPushups" / "v_HandStandPushups_g02_c01" / "n_frames").read_text() == "3"
    assert prepare("ucf101-json", str(lists), str(frames), str(out), "--overwrite") == 0
    assert "training 4 (4 with frames, 0 missing on disk), validation 2 (2 with frames" in capsys.readouterr().out
    database = json.loads((out / "ucf101_01.json").read_text())["database"]
    assert database["v_HandStandPushups_g01_c01"] == {
        "subset": "validation", "annotations": {"label": "HandstandPushups", "segment": [1, 4]}}


HMDB = {  # HMDB-51 file names hold &, (, !, ', [, ;, # and dots
    "kick": ["!!!_Kick_kick_f_cm_np1_ba_bad_0.avi", "Don't_Kick_kick_f_cm_np1_ri_med_1.avi",
             "[HD]_Kick_kick_f_nm_np1_fr_goo_0.avi"],
    "kick_ball": ["#20_kick_ball_f_cm_np1_ba_goo_0.avi", "Bra_&_Tubby;(1)_kick_ball_f_nm_np1_le_goo_0.avi",
                  "Dr._Strangelove_kick_ball_h_cm_np1_fr_med_2.avi"],
}


def test_hmdb51_in_one_flat_folder_with_odd_names_is_placed_split_by_split(tmp_path, capsys):
    """'unrar e' flattens HMDB-51; a video unused (0) in split 1 is used in split 2, so the frames
    are placed once per split JSON, into one FRAME_DIR."""
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for label, names in HMDB.items():
        for name in names:
            write_video(tmp_path / "flat" / name, n_frames=2, size=(33, 24), codec="mpeg4")
        for split, marks in ((1, "120"), (2, "201")):  # trailing spaces, as in the official files
            (splits / f"{label}_test_split{split}.txt").write_text(
                "".join(f"{name} {mark} \n" for name, mark in zip(names, marks)))
    flat, out, frames = tmp_path / "flat", tmp_path / "hmdb51", tmp_path / "hmdb51" / "jpg"
    assert prepare("frames", str(flat), str(frames), "--layout", "hmdb51", "--no-progress") == 2
    assert "prepare hmdb51-json ANNOTATION_DIR" in capsys.readouterr().err
    assert prepare("hmdb51-json", str(splits), str(flat), str(out)) == 0
    for split in (1, 2):
        assert prepare("frames", str(flat), str(frames), "--annotation", str(out / f"hmdb51_{split}.json"),
                       "--workers", "1", "--no-progress") == 0
    assert prepare("hmdb51-json", str(splits), str(frames), str(out), "--overwrite") == 0
    assert capsys.readouterr().out.count("training 2 (2 with frames, 0 missing on disk), validation 2 (2 with frames") == 2
    for label, names in HMDB.items():
        for name in names:
            assert (frames / label / name[:-4] / "n_frames").read_text() == "2"


def test_one_frame_dir_filled_split_by_split_keeps_each_splits_failures(tmp_path, capsys):
    """The val/ run, with no failure, removed the failure list of the train/ run before it."""
    videos, frames = tmp_path / "videos", tmp_path / "jpg"
    write_video(videos / "train" / "walk" / "a.mp4", n_frames=2)
    write_audio_only(videos / "train" / "walk" / "sound.mp4")
    write_video(videos / "val" / "walk" / "b.mp4", n_frames=2)
    assert prepare("frames", str(videos / "train"), str(frames), "--workers", "1", "--no-progress") == 1
    assert prepare("frames", str(videos / "val"), str(frames), "--workers", "1", "--no-progress") == 0
    rows = (frames / FAILURES_FILE).read_text().splitlines()
    assert rows == ["video\treason", f"{videos / 'train' / 'walk' / 'sound.mp4'}\tno video stream (streams: audio)"]
    # placed by one split's JSON, which leaves the failed video out: its row stays
    split_json = tmp_path / "split2.json"
    split_json.write_text(json.dumps({"labels": ["walk"], "database": {
        "b": {"subset": "training", "annotations": {"label": "walk"}}}}))
    assert prepare("frames", str(videos), str(frames), "--annotation", str(split_json), "--workers", "1",
                   "--no-progress") == 0
    assert (frames / FAILURES_FILE).read_text().splitlines() == rows
    (videos / "train" / "walk" / "sound.mp4").unlink()  # gone: the next run through train/ settles its row
    assert prepare("frames", str(videos / "train"), str(frames), "--workers", "1", "--no-progress") == 0
    assert not (frames / FAILURES_FILE).exists()
    assert sorted(p.name for p in frames.iterdir()) == ["walk"]  # and no lock file is left


def test_an_annotation_of_other_keys_does_not_take_a_file_by_a_cut_key(tmp_path, capsys):
    """The Kinetics rule 'a file named by the bare YouTube id finds its key' cut 14 characters off
    every key: under a UCF-101 JSON, a file 'v_ApplyEye.mp4' took the place of v_ApplyEyeMakeup_g08_c01."""
    database = {"v_ApplyEyeMakeup_g08_c01": {"subset": "training", "annotations": {"label": "ApplyEyeMakeup"}}}
    annotation = tmp_path / "ucf.json"
    annotation.write_text(json.dumps({"labels": ["ApplyEyeMakeup"], "database": database}))
    write_video(tmp_path / "videos" / "v_ApplyEye.mp4", n_frames=2)
    write_video(tmp_path / "videos" / "v_ApplyEyeMakeup_g08_c01.avi", n_frames=2, codec="mpeg4")
    assert prepare("frames", str(tmp_path / "videos"), str(tmp_path / "jpg"), "--annotation", str(annotation),
                   "--workers", "1", "--no-progress") == 0
    assert "1 done" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "jpg" / "ApplyEyeMakeup").iterdir()) == ["v_ApplyEyeMakeup_g08_c01"]


def test_activitynet_videos_in_split_folders_are_placed_and_get_their_fps(tmp_path, capsys):
    """The ActivityNet archives hand the videos out in train_val/ and test/ (v1-3): --layout
    activitynet pointed to --layout kinetics (frames in train_val/<video>/, where training never
    looks), and activitynet-json said the folder 'holds neither videos nor v_<id> frame folders'."""
    videos = tmp_path / "videos"
    write_video(videos / "train_val" / "v_--0edUL8zmA.mp4", n_frames=10, rate=10)
    write_video(videos / "test" / "v_zzTestVid01.webm", n_frames=6, rate=15, codec="libvpx-vp9")
    database = {
        "--0edUL8zmA": {"duration": 1.0, "subset": "training", "resolution": "64x48",
                        "url": "https://www.youtube.com/watch?v=--0edUL8zmA",
                        "annotations": [{"segment": [0.2, 0.9], "label": "Dodgeball"}]},
        "zzTestVid01": {"duration": 0.4, "subset": "testing", "resolution": "64x48",
                        "url": "https://www.youtube.com/watch?v=zzTestVid01", "annotations": []},
    }
    official = tmp_path / "activity_net.v1-3.min.json"
    official.write_text(json.dumps({"version": "VERSION 1.3", "database": database, "taxonomy": [
        {"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None},
        {"nodeId": 1, "nodeName": "Dodgeball", "parentId": 0, "parentName": "Root"}]}))
    frames = tmp_path / "jpg"
    assert prepare("frames", str(videos), str(frames), "--layout", "activitynet", "--no-progress") == 2
    error = capsys.readouterr().err
    assert "pass --annotation with the ActivityNet JSON" in error and "--layout kinetics" not in error
    assert prepare("frames", str(videos), str(frames), "--annotation", str(official), "--workers", "1",
                   "--no-progress") == 0
    assert sorted(p.name for p in frames.iterdir()) == ["v_--0edUL8zmA", "v_zzTestVid01"]
    out = tmp_path / "activitynet.json"
    assert prepare("activitynet-json", str(videos), str(official), str(out), "--fps-files",
                   "--frame-dir", str(frames)) == 0
    written = json.loads(out.read_text())["database"]
    assert (written["--0edUL8zmA"]["fps"], written["zzTestVid01"]["fps"]) == (10.0, 15.0)
    assert (frames / "v_--0edUL8zmA" / "fps").read_text() == "10.0\n"


def test_the_successors_generate_video_jpgs_command_line(tmp_path, capsys):
    """``python -m util_scripts.generate_video_jpgs VIDEO_DIR JPG_DIR ucf101 --n_jobs 1 --size 32``:
    the third argument was refused ('unrecognized arguments')."""
    write_video(tmp_path / "UCF-101" / "YoYo" / "v_YoYo_g01_c01.avi", n_frames=3, codec="mpeg4")
    jpg = tmp_path / "jpg"
    assert prepare("frames", str(tmp_path / "UCF-101"), str(jpg), "ucf101", "--n_jobs", "1", "--size", "32",
                   "--no-progress") == 0
    assert (jpg / "YoYo" / "v_YoYo_g01_c01" / "n_frames").read_text() == "3"
    assert prepare("frames", str(tmp_path / "UCF-101"), str(jpg), "ucf101", "--layout", "flat") == 2
    assert "DATASET 'ucf101' and --layout flat both say" in capsys.readouterr().err


MIT_VIDEOS = {  # Moments_in_Time_Raw/<split>/<label>/<file>.mp4
    "training": [("adult+female+singing", "yt-a+b_C (1)&x'y"), ("adult+female+singing", "flickr-1-2.3"),
                 ("clapping", "getty-clap-video-id635808620_4"), ("clapping", "yt-Clap+Co_2")],
    "validation": [("adult+female+singing", "yt-val+sing_1"), ("clapping", "yt-val_clap_3")],
}


def test_moments_in_time_from_the_download_to_one_epoch(tmp_path, capsys):
    """docs/prepare.md's Moments in Time recipe: the download's training/ and validation/ split
    folders of class folders -> one FRAME_DIR (the successor's 'mit' DATASET) -> mit-json with the
    successor's arguments -> resnet3d main --dataset mit trains on every video."""
    raw = tmp_path / "Moments_in_Time_Raw"
    for split, videos in MIT_VIDEOS.items():
        for label, name in videos:
            write_video(raw / split / label / f"{name}.mp4", n_frames=8, size=(48, 32))
    (raw / "moments_categories.txt").write_text("adult+female+singing,0\nclapping,1\n")
    (raw / "trainingSet.csv").write_text("".join(f"{label}/{name}.mp4,{label},3,0\r\n"
                                                 for label, name in MIT_VIDEOS["training"]))
    (raw / "validationSet.csv").write_text("".join(f"{label}/{name}.mp4,{label},2,1\r\n"
                                                   for label, name in MIT_VIDEOS["validation"]))
    jpg = tmp_path / "mit" / "jpg"
    assert prepare("frames", str(raw), str(jpg), "mit", "--n_jobs", "1", "--size", "32", "--no-progress") == 0
    assert "6 videos: 6 done, 0 skipped, 0 failed; 48 frames written" in capsys.readouterr().out
    assert sorted(p.name for p in (jpg / "clapping").iterdir()) == [
        "getty-clap-video-id635808620_4", "yt-Clap+Co_2", "yt-val_clap_3"]

    annotation = tmp_path / "mit" / "mit.json"
    assert prepare("mit-json", str(raw), str(jpg), str(annotation)) == 0
    assert capsys.readouterr().out.strip() == (
        f"wrote {annotation}: 2 labels, training 4 (4 with frames, 0 missing on disk), "
        "validation 2 (2 with frames, 0 missing on disk)")
    database = json.loads(annotation.read_text())["database"]
    assert database["yt-a+b_C (1)&x'y"]["annotations"] == {"label": "adult+female+singing", "segment": [1, 9]}

    assert cli.main(["main", "--root_path", str(tmp_path / "mit"), "--video_path", "jpg", "--annotation_path",
                     "mit.json", "--result_path", "results", "--dataset", "mit", "--n_classes", "2",
                     "--model", "resnet", "--resnet_depth", "10", "--resnet_widen_factor", "0.25",
                     "--sample_size", "32", "--sample_duration", "8", "--n_threads", "0", "--no_hflip", "--crop", "c",
                     "--n_scales", "1", "--n_val_samples", "1", "--batch_size", "2", "--n_epochs", "1",
                     "--no_cuda"]) == 0
    results = tmp_path / "mit" / "results"
    batches = (results / "train_batch.log").read_text().splitlines()
    assert len(batches) == 1 + 2  # a header, then two batches of two clips: the four training videos
    assert (results / "val.log").read_text().splitlines()[1].startswith("1\t")
    assert (results / "model_1.pth").is_file()


def test_split_folders_of_class_folders_and_a_test_folder_of_loose_videos(tmp_path, capsys):
    """--layout splits: a Kinetics-700-2020 download (train/<label>/, val/<label>/, test/<key>.mp4)
    into one FRAME_DIR as the JSON expects it; a class folder whose videos sit one level deeper
    stops the run, as under the class layout; without a layout, the error names --layout splits."""
    videos, frames = tmp_path / "k700-2020", tmp_path / "jpg"
    write_video(videos / "train" / "abseiling" / "a-b_c1d2e3f_000000_000010.mp4", n_frames=2)
    write_video(videos / "val" / "abseiling" / "--07WQ2iBlw_000011_000021.mp4", n_frames=2)
    write_video(videos / "val" / "air drumming" / "x_000001_000011.mp4", n_frames=2)
    write_video(videos / "test" / "tEsT1234567_000000_000010.mp4", n_frames=2)
    assert prepare("frames", str(videos), str(frames), "--no-progress") == 2
    assert "pass --layout splits (VIDEO_DIR/<split>/<class>/<video> -> FRAME_DIR/<class>/<video>/" in capsys.readouterr().err

    deeper = write_video(videos / "train" / "yodelling" / "day1" / "y_000000_000010.mp4", n_frames=2)
    assert prepare("frames", str(videos), str(frames), "--layout", "splits", "--no-progress") == 2
    error = capsys.readouterr().err
    assert f"{videos / 'train' / 'yodelling'}/ holds videos only in its subfolders (e.g. {deeper})" in error
    assert "Nothing written" in error and not frames.exists()

    deeper.unlink()
    assert prepare("frames", str(videos), str(frames), "--layout", "splits", "--workers", "1", "--no-progress") == 0
    assert "4 videos: 4 done" in capsys.readouterr().out
    assert sorted(str(p.relative_to(frames)) for p in frames.glob("*/*")) == [
        "abseiling/--07WQ2iBlw_000011_000021", "abseiling/a-b_c1d2e3f_000000_000010",
        "air drumming/x_000001_000011", "test/tEsT1234567_000000_000010"]
    # one split folder alone: its class folders, as --layout kinetics reads them
    assert prepare("frames", str(videos / "val"), str(tmp_path / "val_only"), "--layout", "splits", "--workers", "1",
                   "--no-progress") == 0
    assert sorted(str(p.relative_to(tmp_path / "val_only")) for p in (tmp_path / "val_only").glob("*/*")) == [
        "abseiling/--07WQ2iBlw_000011_000021", "air drumming/x_000001_000011"]
