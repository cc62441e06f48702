"""The demo: the whole pipeline, end to end, on a generated action data set.

It runs the same commands a user runs (through ``resnet3d.cli.main``), in order:

    synthetic MP4s -> prepare frames -> prepare folder-json -> train -> test -> evaluate
    -> test on time-shuffled frames (the control) -> classify with overlay

The classes of the generated set differ only by motion (down/up, grow/shrink), so the accuracy
next to the time-shuffled control shows that the model uses time, not appearance.
"""
from __future__ import annotations

import json
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from resnet3d.errors import UserError
from resnet3d.hardware import default_num_workers

MARKER = ".resnet3d-demo"  # a workdir holding this file was made by the demo and may be replaced


@dataclass(frozen=True)
class DemoSettings:
    """Sizes chosen to finish in a few minutes on 2 CPU cores and still be well above chance."""

    n_classes: int = 4
    videos_per_class: int = 100
    n_frames: int = 24
    frame_size: tuple = (64, 80)  # (height, width) of the generated videos
    sample_size: int = 48
    sample_duration: int = 16
    epochs: int = 12
    batch_size: int = 16
    learning_rate: float = 0.1
    weight_decay: float = 1e-4
    widen_factor: float = 0.25  # ResNet-10 with a quarter of the channels
    seed: int = 0


@dataclass(frozen=True)
class DemoResult:
    top1: float
    chance: float
    shuffled_top1: float
    workdir: Path


def _run(step: str, argv: Sequence[str]) -> None:
    """Run one resnet3d command in this process; a failure stops the demo naming the step."""
    from resnet3d.cli import main

    print(f"\n$ resnet3d {' '.join(_quote(a) for a in argv)}", flush=True)
    status = main(list(argv))
    if status != 0:
        raise UserError(f"demo step '{step}' failed (exit status {status}); its message is above")


def _quote(arg: str) -> str:
    return f"'{arg}'" if (" " in arg or not arg) else arg


def _prepare_workdir(workdir: Path, overwrite: bool) -> None:
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).exists():
            raise UserError(
                f"{workdir} exists and was not made by the demo; choose another --workdir "
                "(the demo never deletes folders it did not create)"
            )
        if not overwrite:
            raise UserError(f"{workdir} holds an earlier demo run; add --overwrite to replace it, or choose another --workdir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by 'resnet3d demo'; --overwrite may replace this folder\n")


def shuffle_frame_order(src: Path, dst: Path, keys: List[str], seed: int) -> None:
    """Copy each listed frame folder with its frames in a random order (the time control).

    Every frame is kept, only their order changes, so appearance is intact and motion is gone.
    """
    rng = random.Random(seed)
    for key in keys:
        folder_in = src / key
        folder_out = dst / key
        folder_out.mkdir(parents=True, exist_ok=True)
        frames = sorted(folder_in.glob("image_*.jpg"))
        order = list(range(len(frames)))
        rng.shuffle(order)
        for new_index, old_index in enumerate(order, start=1):
            shutil.copyfile(frames[old_index], folder_out / f"image_{new_index:05d}.jpg")
        for extra in ("n_frames", "fps"):
            if (folder_in / extra).exists():
                shutil.copyfile(folder_in / extra, folder_out / extra)


def _validation_folders(annotation_path: Path) -> List[str]:
    data = json.loads(annotation_path.read_text())
    return [
        f"{entry['annotations']['label']}/{key}"
        for key, entry in data["database"].items()
        if entry["subset"] == "validation"
    ]


def _top1(summary_path: Path) -> float:
    return float(json.loads(summary_path.read_text())["top1"])


def run_demo(
    workdir: Path, device: str = "auto", overwrite: bool = False, settings: Optional[DemoSettings] = None
) -> DemoResult:
    from resnet3d.synthetic import make_action_dataset

    s = settings or DemoSettings()
    workdir = Path(workdir)
    _prepare_workdir(workdir, overwrite)
    started = time.monotonic()
    workers = str(default_num_workers(most=2))

    print(f"[1/8] generating {s.n_classes * s.videos_per_class} MP4 videos whose classes differ only by motion", flush=True)
    info = make_action_dataset(
        workdir / "raw",
        n_classes=s.n_classes,
        videos_per_class=s.videos_per_class,
        n_frames=s.n_frames,
        size=s.frame_size,
        fmt="mp4",
        layout="folder",
        seed=s.seed,
    )
    videos = Path(info.video_path)
    jpg = workdir / "jpg"
    annotation = workdir / "annotation.json"
    run = workdir / "run"
    common_device = ["--device", device]

    print("[2/8] extracting frames", flush=True)
    _run("prepare frames", ["prepare", "frames", str(videos), str(jpg), "--short-side", str(s.frame_size[0]), "--workers", workers])
    print("[3/8] writing the annotation JSON (80% training, 20% validation per class)", flush=True)
    _run("prepare folder-json", ["prepare", "folder-json", str(jpg), str(annotation), "--seed", str(s.seed)])

    print("[4/8] training ResNet-10 (a quarter of the channels)", flush=True)
    _run(
        "train",
        [
            "train", "--dataset", "folder", "--video-path", str(jpg), "--annotation-path", str(annotation),
            "--model", "resnet", "--model-depth", "10", "--widen-factor", str(s.widen_factor),
            "--n-classes", str(s.n_classes), "--sample-size", str(s.sample_size),
            "--sample-duration", str(s.sample_duration), "--batch-size", str(s.batch_size),
            "--epochs", str(s.epochs), "--lr", str(s.learning_rate), "--weight-decay", str(s.weight_decay),
            "--scheduler", "cosine", "--checkpoint-every", str(s.epochs), "--seed", str(s.seed),
            "--workers", workers, "--result-path", str(run), *common_device,
        ],
    )
    checkpoint = run / f"model_{s.epochs}.pth"

    print("[5/8] recognising every validation video and scoring the result", flush=True)
    test_args = ["--weights", str(checkpoint), "--dataset", "folder", "--annotation_path", str(annotation), "--n_threads", workers, *common_device]
    _run("test", ["test", *test_args, "--video_path", str(jpg), "--result_path", str(run)])
    _run(
        "evaluate",
        ["evaluate", str(annotation), str(run / "validation.json"), "-k", "2",
         "--output", str(run / "evaluation.json"), "--confusion", str(run / "confusion.png")],
    )

    print("[6/8] control: the same videos with their frames in random order", flush=True)
    shuffled = workdir / "jpg_shuffled"
    shuffle_frame_order(jpg, shuffled, _validation_folders(annotation), seed=s.seed)
    control = run / "shuffled"
    _run("test (shuffled)", ["test", *test_args, "--video_path", str(shuffled), "--result_path", str(control)])
    _run(
        "evaluate (shuffled)",
        ["evaluate", str(annotation), str(control / "validation.json"), "--max-classes", "0",
         "--output", str(control / "evaluation.json")],
    )

    print("[7/8] classifying one video and drawing the labels onto it", flush=True)
    one_video = sorted(videos.rglob("*.mp4"))[0]
    _run(
        "classify",
        ["classify", str(one_video), "--model", str(checkpoint), "--output", str(run / "classify.json"),
         "--overlay", str(run / "overlay"), *common_device],
    )

    result = DemoResult(
        top1=_top1(run / "evaluation.json"),
        chance=1.0 / s.n_classes,
        shuffled_top1=_top1(control / "evaluation.json"),
        workdir=workdir,
    )
    print("[8/8] summary", flush=True)
    print(_summary(result, run, time.monotonic() - started))
    return result


def _summary(result: DemoResult, run: Path, seconds: float) -> str:
    overlay = next(iter(sorted((run / "overlay").glob("*.mp4"))), run / "overlay")
    return "\n".join(
        [
            "",
            f"demo finished in {seconds:.0f} s",
            f"  top-1 accuracy (validation videos)       {result.top1:6.1%}",
            f"  chance level                             {result.chance:6.1%}",
            f"  control: frames shuffled in time         {result.shuffled_top1:6.1%}",
            "",
            "files:",
            f"  checkpoint          {run / 'model_best.pth'}",
            f"  curves              {run / 'curves.png'}",
            f"  confusion matrix    {run / 'confusion.png'}",
            f"  results             {run / 'validation.json'}",
            f"  overlay video       {overlay}",
            "",
            "Next: the commands above, with --video_path/--annotation_path pointing at your data.",
        ]
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0 if run_demo(Path(sys.argv[1] if len(sys.argv) > 1 else "resnet3d_demo")) else 1)
