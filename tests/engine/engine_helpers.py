"""Helpers of the engine's end-to-end tests: the tiny model's flags and the CLI in a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

# A tiny model and clip that still learns the motion classes in a few epochs on one CPU core.
TINY = ["--model", "resnet", "--resnet_depth", "10", "--resnet_widen_factor", "0.25", "--n_classes", "2",
        "--sample_size", "32", "--sample_duration", "8", "--n_threads", "0", "--no_hflip",
        "--crop", "c", "--n_scales", "1"]


def data_args(root: Path):
    return ["--root_path", str(root), "--video_path", "data/jpg", "--annotation_path", "data/annotation.json",
            "--dataset", "kinetics"]


def subprocess_env():
    """One intra-op thread everywhere: runs that must match bit for bit use the same kernels (and
    two test workers share two cores)."""
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


def resnet3d(*argv, check=True, timeout=300, **kwargs):
    done = subprocess.run([sys.executable, "-m", "resnet3d", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(), **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"resnet3d {' '.join(map(str, argv))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done
