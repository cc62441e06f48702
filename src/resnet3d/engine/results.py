"""Per-video result files: the originals' two formats, video naming, incremental saving, resume.

Formats (REFERENCE.md §4):

- ``seed``: ``{"version": "VERSION 1.3", "results": {video_id: [{"label", "score"}, ... 10]},
  "external_data": {"used": false, "details": "..."}}`` in ``<result_path>/<subset>_video.json``,
  videos named by youtube id.
- ``successor``: ``{"results": {video_id: [{"label", "score"}, ... top k]}}`` in
  ``<result_path>/<subset>.json``, videos named by the annotation key; with
  ``--inference_no_average`` each video holds ``[{"segment": [b, e], "result": [...]}, ...]``.

Both gain one key only when something went wrong: ``"errors": {video_id: message}`` lists the
videos that could not be read (the originals' evaluators read only ``results``, so the file
stays readable by them). The file is rewritten atomically every ``save_every`` finished videos
and at the end, so an interrupted run leaves valid partial results that ``--resume`` continues.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from resnet3d.errors import UserError
from resnet3d.fileio import atomic_write_json, atomic_write_text

FLAVOURS = ("seed", "successor")
SEED_VERSION = "VERSION 1.3"
# A Kinetics key: <youtube id>_<time_start:06d>_<time_end:06d>
_KINETICS_KEY = re.compile(r"^(?P<youtube_id>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")


def youtube_id(key: str) -> str:
    """The youtube id inside a Kinetics key; any other key unchanged."""
    match = _KINETICS_KEY.match(key)
    return match.group("youtube_id") if match else key


def result_names(keys: Sequence[str], flavour: str) -> Dict[str, str]:
    """annotation key -> the id its result is filed under.

    The successor files results under the annotation key. The seed's files named videos by the
    folder path minus 14 characters (``<label>/<youtube id>``), an accident of its path handling
    (REFERENCE.md §1); we name them by youtube id, which Kinetics evaluation expects. Two clips of
    one youtube video keep their full keys, so no result overwrites another.
    """
    if flavour != "seed":
        return {key: key for key in keys}
    counts: Dict[str, int] = {}
    for key in dict.fromkeys(keys):
        counts[youtube_id(key)] = counts.get(youtube_id(key), 0) + 1
    return {key: (youtube_id(key) if counts[youtube_id(key)] == 1 else key) for key in keys}


def top_k(scores: Sequence[float], class_names: Sequence[str], k: int) -> List[Dict[str, Any]]:
    """``[{"label", "score"}]`` of the k best classes, best first (ties: the lower class index).

    ``scores``: a list or an array. One stable argsort: 26 us per video for 700 classes where
    Python's sort with a key took 124 us, once per video on recognition's main thread."""
    values = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-values, kind="stable")[: max(1, k)]
    return [{"label": class_names[i], "score": float(values[i])} for i in order]


def document(flavour: str, results: Dict[str, Any], errors: Dict[str, str]) -> Dict[str, Any]:
    """The whole file, in the flavour's layout."""
    if flavour == "seed":
        doc: Dict[str, Any] = {"version": SEED_VERSION, "results": results,
                               "external_data": {"used": False, "details": "..."}}
    else:
        doc = {"results": results}
    if errors:
        doc["errors"] = errors
    return doc


def read_existing(path: Path) -> Dict[str, Any]:
    """A result file written earlier (for --resume): its results and errors."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as error:
        raise UserError(f"{path}: cannot read the earlier results to resume ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error}); --resume needs a results file this program wrote. "
                        "Start over with --overwrite") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise UserError(f"{path}: no 'results' object; --resume needs a results file this program wrote. "
                        "Start over with --overwrite")
    errors = data.get("errors") if isinstance(data.get("errors"), dict) else {}
    # "settings": a share's record of the run that wrote it (``settings_stamp``); None elsewhere
    return {"results": dict(data["results"]), "errors": {str(k): str(v) for k, v in errors.items()},
            "settings": data.get("settings")}


def set_aside(path: Path) -> Path:
    """Rename an earlier results file to the first free ``<stem>.<n><suffix>``; returns the new name."""
    number = 1
    while True:
        candidate = path.with_name(f"{path.stem}.{number}{path.suffix}")
        if not candidate.exists():
            path.rename(candidate)
            return candidate
        number += 1


class ResultWriter:
    """Collects per-video results and keeps the file on disk current.

    ``done`` holds the ids that already have a result (from an earlier run when resuming);
    errors of an earlier run are retried, so they are dropped from the carried-over state.

    Each result is turned into JSON once and kept as text: every save rewrites the whole file,
    and encoding all of it each time made saving quadratic in the videos (Kinetics-400's 19,881
    validation videos: 200 saves, the last 0.64 s, 55 s in all on a 2-core box, in the thread
    that feeds the GPU). The file is byte for byte what ``json.dumps`` of the document gives.
    """

    def __init__(self, path: Path, flavour: str, save_every: int = 100,
                 earlier: Optional[Dict[str, Any]] = None, order: Sequence[str] = (),
                 extra: Optional[Dict[str, Any]] = None) -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}")
        self.path = Path(path)
        self.flavour = flavour
        self.extra = dict(extra or {})  # keys every save adds to the document (a share's "settings")
        self.save_every = max(1, int(save_every))
        # videos are written in annotation order, whichever worker finished them first
        self.position = {video_id: i for i, video_id in enumerate(order)}
        self.results: Dict[str, Any] = dict((earlier or {}).get("results", {}))
        self.errors: Dict[str, str] = {}
        self._since_save = 0
        self._texts: Dict[str, Tuple[Any, str]] = {}  # video id -> (its entry, '"id": entry' as JSON)

    @property
    def done(self) -> set:
        return set(self.results)

    def add(self, video_id: str, entry: Any) -> None:
        # Ids are annotation keys (JSON object keys: strings, "123" too), the youtube ids in them
        # and the keys of result files read back. The file is written from per-video texts whose
        # keys are encoded as they are: another type would make it invalid JSON, so it is refused.
        if not isinstance(video_id, str):
            raise TypeError(f"video ids are strings (annotation keys), got {video_id!r} ({type(video_id).__name__})")
        self.results[video_id] = entry
        self.errors.pop(video_id, None)
        self._tick()

    def add_error(self, video_id: str, message: str) -> None:
        self.errors[video_id] = message
        self._tick()

    def merge(self, other: Dict[str, Any]) -> None:
        """Take over another process's results and errors (distributed recognition)."""
        self.results.update(other.get("results", {}))
        for video_id, message in other.get("errors", {}).items():
            if video_id not in self.results:
                self.errors[video_id] = message

    def _tick(self) -> None:
        self._since_save += 1
        if self._since_save >= self.save_every:
            self.save()

    def _ordered(self, entries: Dict[str, Any]) -> Dict[str, Any]:
        last = len(self.position)
        return dict(sorted(entries.items(), key=lambda item: self.position.get(item[0], last)))

    def _results_json(self, results: Dict[str, Any]) -> str:
        """``json.dumps(results)``, each video's part encoded once (until its entry is replaced)."""
        parts = []
        for video_id, entry in results.items():
            cached = self._texts.get(video_id)
            if cached is None or cached[0] is not entry:
                cached = self._texts[video_id] = (entry, f"{json.dumps(video_id)}: {json.dumps(entry)}")
            parts.append(cached[1])
        return "{" + ", ".join(parts) + "}"

    def save(self, extra: Optional[Dict[str, Any]] = None) -> None:
        results = self._ordered(self.results)
        doc = document(self.flavour, results, self._ordered(self.errors))
        doc.update(self.extra)
        if extra:
            doc.update(extra)
        # json.dumps(doc) with its default separators, the results' part from the kept texts
        text = ", ".join(f"{json.dumps(key)}: {self._results_json(results) if key == 'results' else json.dumps(value)}"
                         for key, value in doc.items())
        atomic_write_text(self.path, "{" + text + "}")
        self._since_save = 0


def state_path(output: Path) -> Path:
    """The hidden file beside ``output`` that says which weights and settings produced it, so
    that a run resumes only results that the same model and views would give again."""
    return output.with_name(f".{output.name}.state.json")


def weights_digest(model: Any) -> str:
    """A digest of every parameter and buffer of ``model`` (names, shapes, bytes)."""
    import hashlib

    import torch

    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).cpu().numpy().tobytes())
    return digest.hexdigest()


def read_state(output: Path) -> Optional[Dict[str, Any]]:
    try:
        with open(state_path(output), "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(output: Path, settings: Dict[str, Any]) -> None:
    atomic_write_json(state_path(output), settings, indent=1)


def settings_stamp(settings: Dict[str, Any]) -> str:
    """A digest of a run's weights and settings (``write_state``'s), which each share of a
    distributed run records: a share is continued only by a run of the same ones. (Shares can
    lie on machines whose results folder holds no state file: that stays on rank 0's.)"""
    import hashlib

    text = json.dumps(settings, sort_keys=True)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def differences(stored: Dict[str, Any], current: Dict[str, Any]) -> List[str]:
    """The settings that changed between the run that wrote a file and this one."""
    keys = sorted(set(stored) | set(current))
    return [key for key in keys if stored.get(key) != current.get(key)]


def partial_path(output: Path, rank: int, world_size: int) -> Path:
    """Where process ``rank`` of ``world_size`` keeps its share during distributed recognition."""
    return output.with_name(f".{output.name}.rank{rank}of{world_size}.json")


def partial_paths(output: Path) -> Iterable[Path]:
    """Every share an earlier distributed run left beside ``output``."""
    return sorted(output.parent.glob(f".{output.name}.rank*of*.json"))
