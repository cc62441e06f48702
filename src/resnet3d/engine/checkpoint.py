"""Saving and finding the checkpoints a training run writes (format in docs/architecture.md).

``model_<epoch>.pth`` every ``--checkpoint`` epochs, ``model_best.pth`` by validation accuracy,
and ``model_interrupted.pth`` when a signal stops the run mid-epoch. Each holds everything a
continued run needs to carry on exactly: model, optimiser, schedule, grad scaler, the resolved
config, the RNG states of every rank and, for an interrupted epoch, how many steps of it were
done. Only tensors, numbers, strings, lists, tuples and dicts go in, so
``torch.load(..., weights_only=True)`` reads them; every write is atomic.

Checkpoints of other programs (the successor's ``save_<N>.pth``, 2018 ``module.`` ones, the
seed's ``.t7``) are read by ``resnet3d.checkpoints``; this module only writes ours and reads
back the training state that only ours carry.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from resnet3d.errors import UserError
from resnet3d.fileio import atomic_torch_save, remove_leftovers

FORMAT = "resnet3d"
FORMAT_VERSION = 1
BEST_NAME = "model_best.pth"
INTERRUPTED_NAME = "model_interrupted.pth"
_EPOCH_NAME = re.compile(r"^(?:model|save)_(\d+)\.(?:pth|t7)$")


def epoch_path(result_path: Path, epoch: int) -> Path:
    return Path(result_path) / f"model_{epoch}.pth"


def continue_path(result_path: Path, begin_epoch: int) -> Path:
    """The file ``--begin_epoch N`` continues from: model_<N-1>.pth, else the seed's
    model_<N-1>.t7, else the successor's save_<N-1>.pth."""
    previous = begin_epoch - 1
    candidates = [Path(result_path) / f"{stem}_{previous}.{ext}"
                  for stem, ext in (("model", "pth"), ("model", "t7"), ("save", "pth"))]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UserError(
        f"--begin_epoch {begin_epoch} continues from epoch {previous}, but {result_path} holds none of "
        f"{', '.join(c.name for c in candidates)}; check --result_path (and --root_path), or start at --begin_epoch 1"
    )


def under_the_other_name(path: Path) -> Optional[Path]:
    """The same epoch's checkpoint under the other program's name: our ``model_<N>.pth`` for the
    successor's ``save_<N>.pth`` and the reverse (scripts written for one name the other's
    files); None for any other name."""
    match = re.match(r"^(model|save)_(\d+)\.pth$", Path(path).name)
    if match is None:
        return None
    other = "save" if match.group(1) == "model" else "model"
    return Path(path).with_name(f"{other}_{match.group(2)}.pth")


def existing_checkpoint(path: Union[str, Path]) -> Tuple[Path, Optional[str]]:
    """The checkpoint file a run names by epoch (pretrained weights, a checkpoint to continue or
    evaluate, recognition's weights): ``path`` itself, or, where it does not exist but the same
    epoch's checkpoint under the other name does, that file and the note that says so (the
    successor's README names ``save_<N>.pth``, our runs write ``model_<N>.pth``)."""
    path = Path(path)
    other = under_the_other_name(path) if not path.exists() else None
    if other is None or not other.is_file():
        return path, None
    return other, (f"{path} does not exist: using {other}, the same epoch's checkpoint under the other name "
                   "(resnet3d writes model_<epoch>.pth, the successor wrote save_<epoch>.pth)")


def rng_state() -> Dict[str, Any]:
    np_state = np.random.get_state()
    state: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "algorithm": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    npy = state["numpy"]
    np.random.set_state((npy["algorithm"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def save_checkpoint(path: Path, payload: Dict[str, Any]) -> None:
    """Write ``payload`` (built by the trainer) atomically, stamped with our format."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    atomic_torch_save(payload, path)


def read_checkpoint(path: Path) -> Dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``), with a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except Exception as error:  # unpickling refused, truncated file, not a torch file
        raise UserError(f"{path}: cannot be read as a PyTorch checkpoint with weights_only=True "
                        f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a checkpoint dict, found {type(data).__name__}")
    return data


def is_ours(data: Dict[str, Any]) -> bool:
    return data.get("format") == FORMAT


def progress_of(data: Dict[str, Any]) -> Tuple[int, int]:
    """(completed epochs, steps done in the next epoch) of one of our checkpoints."""
    return int(data.get("epoch", 0)), int(data.get("step_in_epoch", 0) or 0)


def _progress_of_file(candidate: Path) -> Optional[Tuple[int, int]]:
    """(epochs done, steps into the next) of a checkpoint file of ours: from its name for
    ``model_<epoch>.pth``, read from it for the others; None for a file that is not ours or
    does not load (it is left where it is, and never hides the regular checkpoints)."""
    match = _EPOCH_NAME.match(candidate.name)
    if match:
        return int(match.group(1)), 0
    try:
        data = torch.load(candidate, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    return progress_of(data) if isinstance(data, dict) and is_ours(data) else None


def find_latest(result_path: Path) -> Optional[Path]:
    """The most advanced checkpoint of ours in ``result_path`` (for ``--resume auto``).

    ``model_best.pth`` counts: it holds a whole run state like the others, and with the default
    ``--checkpoint 10`` it is a killed run's only checkpoint for its first nine epochs. At equal
    progress a ``model_<epoch>.pth`` is named (the same state, under the name that says where)."""
    result_path = Path(result_path)
    if not result_path.is_dir():
        return None
    best: Optional[Tuple[Tuple[int, int], Path]] = None
    candidates = [p for p in result_path.glob("model_*.pth")
                  if _EPOCH_NAME.match(p.name) or p.name in (INTERRUPTED_NAME, BEST_NAME)]
    for candidate in sorted(candidates, key=lambda p: (p.name == BEST_NAME, p.name)):
        progress = _progress_of_file(candidate)
        if progress is not None and (best is None or progress > best[0]):
            best = (progress, candidate)
    return None if best is None else best[1]


def checkpoints_after(result_path: Path, progress: Tuple[int, int], source: Optional[Path]) -> List[Path]:
    """Our checkpoints in ``result_path`` beyond ``progress`` (epochs done, steps into the next):
    what a run went on to write after the checkpoint a continued run starts from (``source``,
    never listed). ``model_best.pth`` counts by the epoch it was saved at. (The originals' own
    ``save_<N>.pth`` files are not a run of ours and are never moved.)"""
    result_path = Path(result_path)
    if not result_path.is_dir():
        return []
    later = []
    for candidate in sorted(result_path.glob("model_*.pth")):
        if not (_EPOCH_NAME.match(candidate.name) or candidate.name in (INTERRUPTED_NAME, BEST_NAME)):
            continue
        if source is not None and candidate.exists() and source.exists() and candidate.samefile(source):
            continue
        reached = _progress_of_file(candidate)
        if reached is not None and reached > progress:
            later.append(candidate)
    return later


def remove_partial_writes(result_path: Path) -> List[str]:
    """Remove the temporary files of checkpoint writes a killed run left (``.model_3.pth.x1y2.tmp``:
    atomic writes go to such a file, then rename it). Called under the run's lock, when no other
    run can be writing them; returns the names removed."""
    return sorted(remove_leftovers(Path(result_path).glob(".model_*.pth.*.tmp"), unit="MiB"))


def previous_run_files(result_path: Path) -> List[Path]:
    """Files of an earlier run that a fresh run would replace."""
    result_path = Path(result_path)
    names = ["train.log", "train_batch.log", "val.log", BEST_NAME, INTERRUPTED_NAME]
    found = [result_path / n for n in names if (result_path / n).is_file()]
    found += sorted(p for p in result_path.glob("model_*.pth") if _EPOCH_NAME.match(p.name))
    # --tensorboard's event files: kept, they showed the earlier run's curves beside the new run's
    found += sorted((result_path / "tensorboard").glob("events.out.tfevents.*"))
    return found
