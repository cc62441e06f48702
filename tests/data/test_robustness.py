"""Bad data never stops a run: stand-in frames, substituted videos, counts and one log line per file."""
from __future__ import annotations

import logging
import shutil

import pytest
import torch

from resnet3d.data import DataConfig, batch_counters, build_dataset, build_loader, set_epoch
from resnet3d.errors import UserError

from data_helpers import ramp_frames, write_frames, write_json


def _dataset(tmp_path, n_videos=3, n_frames=8, **changes):
    labels = ["a"]
    database = {f"k{i}": {"subset": "training", "annotations": {"label": "a"}} for i in range(n_videos)}
    path = write_json(tmp_path / "k.json", {"labels": labels, "database": database})
    for i in range(n_videos):
        write_frames(tmp_path / "jpg" / "a" / f"k{i}", ramp_frames(n_frames, 16, 16))
    cfg = DataConfig(video_path=str(tmp_path / "jpg"), annotation_path=path, sample_size=8, sample_duration=n_frames, **changes)
    return cfg


def test_corrupt_and_missing_frames_are_replaced_counted_and_logged_once(tmp_path, caplog):
    cfg = _dataset(tmp_path)
    folder = tmp_path / "jpg" / "a" / "k0"
    (folder / "image_00003.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (folder / "image_00006.jpg").unlink()
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        item = dataset[0]
        dataset[0]  # the same file again: no second log line
    assert item["clip"].shape == (8, 8, 8, 3)
    assert item["bad_frames"] == 2 and item["bad_video"] == 0
    levels = [round(float(f.float().mean()) / 10) for f in item["clip"]]
    assert levels[2] in (2, 4) and levels[5] in (5, 7)  # a neighbouring frame stands in
    assert levels[:2] == [1, 2] and levels[6:] == [7, 8]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and str(folder) in messages[0] and "stands in" in messages[0]


def test_truncated_jpeg_counts_as_bad(tmp_path):
    cfg = _dataset(tmp_path)
    frame = tmp_path / "jpg" / "a" / "k1" / "image_00004.jpg"
    frame.write_bytes(frame.read_bytes()[: len(frame.read_bytes()) // 2])
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    assert dataset[1]["bad_frames"] == 1


def test_window_past_the_end_borrows_frames_from_the_video(tmp_path):
    cfg = _dataset(tmp_path, n_frames=6)
    (tmp_path / "jpg" / "a" / "k0" / "n_frames").write_text("20")  # claims more frames than exist
    dataset = build_dataset(cfg.with_changes(sample_duration=4), "training", sampling="even", n_clips=2, train=False)
    last = dataset[1]  # frames 17..20: none exist
    assert last["bad_frames"] == 4 and last["bad_video"] == 0
    assert last["clip"].float().mean() > 0


def test_unreadable_video_is_replaced_and_counted(tmp_path, caplog):
    cfg = _dataset(tmp_path)
    for jpg in (tmp_path / "jpg" / "a" / "k1").glob("*.jpg"):
        jpg.write_bytes(b"garbage")
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        item = dataset[1]
    assert item["bad_video"] == 1 and item["video"] != 1
    assert any("k1" in r.getMessage() and "no readable frame" in r.getMessage() for r in caplog.records)


def test_empty_folder_is_replaced(tmp_path):
    cfg = _dataset(tmp_path)
    shutil.rmtree(tmp_path / "jpg" / "a" / "k2")
    (tmp_path / "jpg" / "a" / "k2").mkdir()
    dataset = build_dataset(cfg, "training")
    assert dataset[2]["bad_video"] == 1


def test_workers_survive_bad_data_and_counters_add_up(tmp_path):
    cfg = _dataset(tmp_path, n_videos=6)
    (tmp_path / "jpg" / "a" / "k0" / "image_00002.jpg").write_bytes(b"nope")
    (tmp_path / "jpg" / "a" / "k3" / "image_00005.jpg").unlink()
    for jpg in (tmp_path / "jpg" / "a" / "k4").glob("*.jpg"):
        jpg.write_bytes(b"garbage")
    dataset = build_dataset(cfg, "training", sampling="center")
    loader = build_loader(dataset, 3, train=True, num_workers=2, seed=1)
    totals = {"bad_frames": 0, "bad_video": 0}
    for epoch in range(2):
        set_epoch(loader, epoch)
        for batch in loader:
            assert batch["clip"].dtype == torch.uint8 and batch["clip"].shape[1:] == (8, 8, 8, 3)
            for key, value in batch_counters(batch).items():
                totals[key] += value
    # per epoch: k0 and k3 one stand-in frame each; k4 replaced by the next candidate,
    # (4 + 7919) % 6 = k3, whose clip again has its one stand-in frame
    assert totals["bad_video"] == 2
    assert totals["bad_frames"] == 2 * 3


def test_a_whole_unreadable_data_set_is_a_clear_error(tmp_path):
    cfg = _dataset(tmp_path, n_videos=2)
    for jpg in (tmp_path / "jpg").rglob("*.jpg"):
        jpg.write_bytes(b"garbage")
    with pytest.raises(UserError, match="no readable frame"):
        build_dataset(cfg, "training")[0]


@pytest.mark.parametrize("pattern, n_frames_file", [("img_{:05d}.jpg", False), ("frame{:06d}.jpg", True)])
def test_frames_named_otherwise_say_what_is_there_and_the_fix(tmp_path, caplog, pattern, n_frames_file):
    """Another tool's frame names give a line naming what the folder holds, the expected names
    and the fix, whether the folder has an n_frames file (frames 'missing') or not (no frames)."""
    cfg = _dataset(tmp_path, n_videos=2)
    folder = tmp_path / "jpg" / "a" / "k1"
    for index in range(1, 9):
        (folder / f"image_{index:05d}.jpg").rename(folder / pattern.format(index))
    if not n_frames_file:
        (folder / "n_frames").unlink()
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        assert dataset[1]["bad_video"] == 1
    lines = [r.getMessage() for r in caplog.records if "k1" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"holds 8 image files named like '{pattern.format(1)}', none named image_%05d.jpg" in lines[0]
    assert "resnet3d prepare frames" in lines[0] and "rename them" in lines[0]
    (tmp_path / "jpg" / "a" / "k0").rename(tmp_path / "k0")  # nothing readable left: the error keeps the reason
    with pytest.raises(UserError, match=r"in a row had no readable frame \(the last: .*k1: .*named like"):
        build_dataset(cfg.with_changes(), "training", sampling="center", train=False)[1]


def test_recognition_of_frames_named_otherwise_says_so(tmp_path):
    from resnet3d.engine.windows import Unit, ViewPlan, WindowDataset

    cfg = _dataset(tmp_path, n_videos=1)
    folder = tmp_path / "jpg" / "a" / "k0"
    for jpg in folder.glob("image_*.jpg"):
        jpg.rename(folder / jpg.name.replace("image_", "img_"))
    (folder / "n_frames").unlink()
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    windows = WindowDataset(dataset.videos, [Unit("k0", (0,))], cfg, ViewPlan(8, 8))
    chunks = list(windows.unit_chunks(0))
    assert "named like 'img_00001.jpg'" in chunks[0]["error"]


LOAD_WITH_TWO_WORKERS = """
import sys
from resnet3d.data import DataConfig, build_dataset, build_loader
cfg = DataConfig(video_path=sys.argv[1], annotation_path=sys.argv[2], sample_size=8, sample_duration=8)
# two windows of the one video: item 0 goes to worker 0, item 1 to worker 1
dataset = build_dataset(cfg, "validation", sampling="even", n_clips=2, train=False)
for batch in build_loader(dataset, 1, train=False, num_workers=2):
    print("bad frames", int(batch["bad_frames"].sum()))
"""


def test_a_bad_frame_is_logged_once_however_many_workers_read_it(tmp_path):
    import subprocess
    import sys

    cfg = _dataset(tmp_path, n_videos=1)
    path = write_json(tmp_path / "val.json", {"labels": ["a"], "database": {
        "k0": {"subset": "validation", "annotations": {"label": "a"}}}})
    (tmp_path / "jpg" / "a" / "k0" / "image_00004.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    done = subprocess.run([sys.executable, "-c", LOAD_WITH_TWO_WORKERS, cfg.video_path, path],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n").count("bad frames 1") == 2  # both workers met it
    lines = [line for line in done.stderr.splitlines() if "image_00004.jpg" in line]
    assert len(lines) == 1, done.stderr
