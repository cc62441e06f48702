import hashlib
import json

import pytest
from PIL import Image

from resnet3d.demo import DemoSettings, run_demo, shuffle_frame_order
from resnet3d.errors import UserError


def _digest(path):
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_shuffle_keeps_every_frame_and_changes_the_order(tmp_path):
    src = tmp_path / "jpg" / "grow" / "v1"
    src.mkdir(parents=True)
    for index in range(1, 11):
        Image.new("RGB", (8, 8), (index * 20, 0, 0)).save(src / f"image_{index:05d}.jpg")
    (src / "n_frames").write_text("10")
    shuffle_frame_order(tmp_path / "jpg", tmp_path / "out", ["grow/v1"], seed=0)
    before = [_digest(src / f"image_{i:05d}.jpg") for i in range(1, 11)]
    after = [_digest(tmp_path / "out" / "grow" / "v1" / f"image_{i:05d}.jpg") for i in range(1, 11)]
    assert sorted(before) == sorted(after)
    assert before != after
    assert (tmp_path / "out" / "grow" / "v1" / "n_frames").read_text() == "10"


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_and_leaves_its_files(tmp_path, capsys):
    tiny = DemoSettings(n_classes=2, videos_per_class=5, n_frames=10, frame_size=(32, 40), sample_size=32,
                        sample_duration=8, epochs=1, batch_size=4)
    workdir = tmp_path / "demo"
    result = run_demo(workdir, device="cpu", settings=tiny)
    run = workdir / "run"
    for name in ("model_1.pth", "model_best.pth", "curves.png", "confusion.png", "validation.json",
                 "evaluation.json", "classify.json"):
        assert (run / name).is_file(), name
    overlays = list((run / "overlay").glob("*.mp4"))
    assert len(overlays) == 1
    assert 0.0 <= result.top1 <= 1.0 and result.chance == 0.5
    assert json.loads((run / "evaluation.json").read_text())["videos"] == 2
    out = capsys.readouterr().out
    assert "top-1 accuracy" in out and "chance level" in out and "frames shuffled in time" in out

    # A second run neither deletes nor reuses the first one silently.
    with pytest.raises(UserError, match="--overwrite"):
        run_demo(workdir, device="cpu", settings=tiny)
    run_demo(workdir, device="cpu", settings=tiny, overwrite=True)


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(UserError, match="not made by the demo"):
        run_demo(tmp_path, device="cpu", overwrite=True)
    assert (tmp_path / "mine.txt").read_text() == "user data"
