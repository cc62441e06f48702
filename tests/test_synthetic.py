"""The generated action data sets: real decodable files, expected counts, and classes that only
motion tells apart (time reversal swaps each class with its partner)."""
from __future__ import annotations

import json
import os

import av
import numpy as np
import pytest
import simplejpeg

from resnet3d.errors import UserError
from resnet3d.synthetic import MOTIONS, REVERSED, make_action_dataset, render_video


def _centroid_track(frames: np.ndarray) -> np.ndarray:
    """Centre of the pixels that differ from the clip's temporal median (the moving disc)."""
    median = np.median(frames.astype(np.float32), axis=0)
    track = []
    for frame in frames.astype(np.float32):
        mask = np.abs(frame - median).sum(-1) > 60
        ys, xs = np.nonzero(mask)
        track.append((xs.mean(), ys.mean()))
    return np.array(track)


def _direction(frames: np.ndarray) -> np.ndarray:
    track = _centroid_track(frames)
    return track[-1] - track[0]


@pytest.mark.parametrize("motion", [0, 1, 4, 5])
def test_translation_classes_move_their_way_and_reverse_in_time(motion):
    name, dx, dy, _, _ = MOTIONS[motion]
    frames = render_video(motion, 12, (64, 80), np.random.default_rng(motion))
    forward = _direction(frames)
    assert forward[0] * dx >= 0 and forward[1] * dy >= 0
    assert np.hypot(*forward) > 8  # visible motion
    backward = _direction(frames[::-1])
    partner = next(m for m in MOTIONS if m[0] == REVERSED[name])
    assert backward[0] * partner[1] >= 0 and backward[1] * partner[2] >= 0


@pytest.mark.parametrize("motion, grows", [(2, True), (3, False)])
def test_grow_and_shrink_change_size_in_place(motion, grows):
    """Pixels switch between disc and background when the rim passes them: later the further out
    for a growing disc, earlier for a shrinking one."""
    frames = render_video(motion, 12, (64, 80), np.random.default_rng(motion), noise=0).astype(np.float32)
    jumps = np.abs(np.diff(frames, axis=0)).sum(-1)  # (T-1, H, W)
    changed = jumps.max(0) > 80
    when = jumps.argmax(0)[changed]
    ys, xs = np.nonzero(changed)
    distance = np.hypot(xs - xs.mean(), ys - ys.mean())
    ring = distance > np.percentile(distance, 30)  # the rim's path, not the spinning-free centre
    correlation = np.corrcoef(distance[ring], when[ring])[0, 1]
    assert correlation > 0.5 if grows else correlation < -0.5
    assert REVERSED[MOTIONS[motion][0]] == MOTIONS[motion ^ 1][0]


def test_spin_classes_stay_in_place_and_differ_only_in_sense():
    frames = render_video(6, 12, (64, 80), np.random.default_rng(0))
    diff = np.abs(frames[1:].astype(int) - frames[:-1].astype(int)).sum(-1) > 60
    assert diff.any()  # the wedges turn
    ys, xs = np.nonzero(diff.any(0))
    assert xs.max() - xs.min() < 40 and ys.max() - ys.min() < 40  # within the disc
    assert REVERSED["spin clockwise"] == "spin anticlockwise"


def test_the_first_four_classes_survive_a_horizontal_flip():
    """Flipping left-right keeps down/up/grow/shrink videos in their class (hflip is on by default)."""
    for motion in (0, 1):
        frames = render_video(motion, 10, (48, 64), np.random.default_rng(motion))
        dx, dy = _direction(frames[:, :, ::-1])
        assert abs(dy) > abs(dx) and dy * MOTIONS[motion][2] > 0


def test_single_frames_do_not_tell_the_class():
    """First frames of different classes come from the same distribution: mean colours and disc
    placement overlap, so only the motion separates them (a statistical sanity check)."""
    rng = np.random.default_rng(0)
    means = {m: [render_video(m, 1, (32, 32), rng)[0].mean() for _ in range(12)] for m in (0, 1)}
    assert abs(np.mean(means[0]) - np.mean(means[1])) < 2 * (np.std(means[0]) + np.std(means[1]))


def test_kinetics_layout_with_jpegs_and_mp4(tmp_path):
    info = make_action_dataset(str(tmp_path), n_classes=3, videos_per_class=4, n_frames=10, size=(32, 48), fmt="both", seed=1)
    data = json.loads(open(info.annotation_path).read())
    assert data["labels"] == info.class_names == ["move down", "move up", "grow"]
    assert info.subsets == {"training": 9, "validation": 3}
    assert len(data["database"]) == 12
    for key, entry in data["database"].items():
        label = entry["annotations"]["label"]
        assert entry["annotations"]["segment"] == [1, 11]
        folder = os.path.join(info.jpg_path, label, key)
        names = sorted(n for n in os.listdir(folder) if n.endswith(".jpg"))
        assert names == [f"image_{i:05d}.jpg" for i in range(1, 11)]
        assert open(os.path.join(folder, "n_frames")).read() == "10"  # as the seed wrote it, no newline
        frame = simplejpeg.decode_jpeg(open(os.path.join(folder, names[0]), "rb").read())
        assert frame.shape == (32, 48, 3)
        with av.open(os.path.join(info.video_path, label, key + ".mp4")) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(decoded) == 10 and decoded[0].shape == (32, 48, 3)
        assert np.abs(decoded[0].astype(int) - frame.astype(int)).mean() < 10  # the same picture


def test_ucf101_layout_and_split_files(tmp_path):
    info = make_action_dataset(str(tmp_path), n_classes=2, videos_per_class=4, n_frames=4, layout="ucf101", seed=2)
    assert info.dataset == "ucf101" and info.class_names == ["MoveDown", "MoveUp"]
    assert (tmp_path / "classInd.txt").read_text() == "1 MoveDown\n2 MoveUp\n"
    train = (tmp_path / "trainlist01.txt").read_text().splitlines()
    test = (tmp_path / "testlist01.txt").read_text().splitlines()
    assert len(train) == 6 and len(test) == 2
    name, number = train[0].split()
    assert name.startswith("MoveDown/v_MoveDown_g") and name.endswith(".avi") and number == "1"
    assert os.path.isdir(os.path.join(info.jpg_path, name[: -len(".avi")]))


def test_same_seed_same_data(tmp_path):
    a = make_action_dataset(str(tmp_path / "a"), n_classes=2, videos_per_class=2, n_frames=3, seed=7)
    b = make_action_dataset(str(tmp_path / "b"), n_classes=2, videos_per_class=2, n_frames=3, seed=7)
    assert [v["key"] for v in a.videos] == [v["key"] for v in b.videos]
    first = a.videos[0]["rel_path"]
    assert (tmp_path / "a" / "jpg" / first / "image_00002.jpg").read_bytes() == (tmp_path / "b" / "jpg" / first / "image_00002.jpg").read_bytes()


def test_bad_requests_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="n_classes"):
        make_action_dataset(str(tmp_path), n_classes=9)
    with pytest.raises(UserError, match="layout"):
        make_action_dataset(str(tmp_path), layout="nope")


def test_command_line(tmp_path, capsys):
    from resnet3d.synthetic import main

    assert main([str(tmp_path / "m"), "--n-classes", "2", "--videos-per-class", "2", "--n-frames", "3", "--size", "16", "24"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["subsets"] == {"training": 2, "validation": 2} and summary["size"] == [16, 24]
    assert (tmp_path / "m" / "annotation.json").exists()
