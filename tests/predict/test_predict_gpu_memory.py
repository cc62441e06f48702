"""A GPU out of memory while recognising or classifying: one line with the batch and the fix, and
what was done before it kept. torch's own error type is raised on the CPU where the model's batch
would have raised it."""
import json
from pathlib import Path

import torch

from predict_helpers import DURATION, SIZE
from resnet3d.cli import main

TORCH_TEXT = ("CUDA out of memory. Tried to allocate 512.00 MiB. GPU 0 has a total capacity of 15.77 GiB of which "
              "80.00 MiB is free. Of the allocated memory 14.9 GiB is allocated by PyTorch.")
SUMMARY = "CUDA out of memory. Tried to allocate 512.00 MiB. GPU 0 has a total capacity of 15.77 GiB of which 80.00 MiB is free"


def _test(motion, checkpoint, output, *extra):
    return main(["test", "--weights", str(checkpoint), "--video-path", motion.jpg_path, "--annotation-path",
                 motion.annotation_path, "--subset", "training", "--output", str(output), "--workers", "0",
                 "--batch-size", "2", "--no-cuda", *extra])


def test_recognition_keeps_what_it_scored(motion, our_checkpoint, tmp_path, monkeypatch, capsys):
    """It came as torch's traceback; the results were saved all the same, and are continued."""
    from resnet3d.engine import scoring

    assert _test(motion, our_checkpoint, tmp_path / "whole.json") == 0
    whole = json.loads((tmp_path / "whole.json").read_text())
    calls = [0]
    submit = scoring.Scorer.submit

    def failing(self, rows, meta):
        calls[0] += 1
        if calls[0] == 5:
            raise torch.cuda.OutOfMemoryError(TORCH_TEXT)
        return submit(self, rows, meta)

    monkeypatch.setattr(scoring.Scorer, "submit", failing)
    output = tmp_path / "results.json"
    capsys.readouterr()
    assert _test(motion, our_checkpoint, output) == 2
    err = capsys.readouterr().err
    assert (f"resnet3d test: error: the GPU ran out of memory scoring batches of 2 clips of {DURATION}x{SIZE}x{SIZE} "
            f"({SUMMARY}): lower the batch size (resnet3d test --batch-size, resnet3d main --inference_batch_size); "
            "what was scored is saved: continue with --resume") in err, err
    assert "Traceback" not in err
    kept = json.loads(output.read_text())["results"]
    assert 0 < len(kept) < len(whole["results"])
    monkeypatch.undo()
    assert _test(motion, our_checkpoint, output, "--resume") == 0
    assert json.loads(output.read_text()) == whole


def test_classify_keeps_the_videos_before(motion, our_checkpoint, tmp_path, monkeypatch, capsys):
    import resnet3d.classify as classify

    videos = sorted(str(path) for path in Path(motion.video_path).rglob("*.mp4"))[:3]
    calls = [0]
    classify_video = classify.classify_video

    def failing(*args, **kwargs):  # the second video's batch: the model's memory ran out
        calls[0] += 1
        if calls[0] == 2:
            raise torch.cuda.OutOfMemoryError(TORCH_TEXT)
        return classify_video(*args, **kwargs)

    monkeypatch.setattr(classify, "classify_video", failing)
    output = tmp_path / "classified.json"
    assert main(["classify", *videos, "--model", str(our_checkpoint), "--output", str(output), "--no-cuda",
                 "--batch-size", "2"]) == 2
    err = capsys.readouterr().err
    assert (f"resnet3d classify: error: the GPU ran out of memory classifying {videos[1]} in batches of 2 clips of "
            f"{DURATION}x{SIZE}x{SIZE} ({SUMMARY}): lower --batch-size; the videos classified before it are saved in "
            f"{output}") in err, err
    assert "Traceback" not in err
    assert [record["video"] for record in json.loads(output.read_text())] == videos[:1]
