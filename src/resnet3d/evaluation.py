"""Scoring a per-video results file against the ground truth (``resnet3d evaluate``).

The successor's ``eval_accuracy.py`` semantics, made robust:

- top-k accuracy = videos of the subset whose true class is among their k best labels, divided
  by all videos of the subset (a video without a result counts as a miss); with ``ignore``,
  divided by the videos that have a result;
- results are matched to ground-truth keys whatever form their ids take: the full key
  (``<youtube_id>_<start:06d>_<end:06d>``, the successor's), the bare youtube id (ours in the
  seed's format, and the Kinetics evaluation's), or the seed's own ``<label>/<youtube_id>`` and
  ``test/<youtube_id>``;
- subsets may be written ``val``/``train``/``test``; a subset or a result file that matches no
  video is an error, never an accuracy of 0 (the successor's README example passes ``val``,
  which silently matched nothing there).

Beyond the original: mean class accuracy, a per-class table, a confusion matrix and a JSON summary.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from resnet3d.data.config import SUBSET_ALIASES
from resnet3d.engine.results import youtube_id
from resnet3d.errors import UserError
from resnet3d.fileio import read_user_json


@dataclass(frozen=True)
class GroundTruth:
    path: str
    subset: str
    class_names: List[str]
    labels: Dict[str, List[str]]  # video key -> its labels (ActivityNet videos may have several)
    unlabelled: List[str] = field(default_factory=list)  # keys of the subset without a label: left out

    @property
    def labels_not_listed(self) -> List[str]:
        """Ground-truth labels missing from the label list: their videos count, in no class."""
        listed = set(self.class_names)
        return sorted({label for found in self.labels.values() for label in found if label not in listed})


@dataclass(frozen=True)
class Predictions:
    path: str
    ranked: Dict[str, List[str]]  # result id -> labels, best first
    errors: Dict[str, str] = field(default_factory=dict)


def _read_json(path: str, what: str) -> Any:
    return read_user_json(path, what)


def subset_name(subset: str, present: Sequence[str]) -> str:
    """The subset the entries are matched by: the file's own name when --subset spells it so,
    else the shared format's ('val', 'Validation ' and 'validation' all mean 'validation', as
    training reads them: ``annotations.entry_subset``)."""
    from resnet3d.data.annotations import entry_subset

    if subset in present:
        return subset
    canonical = entry_subset(subset)
    if canonical is not None and any(entry_subset(name) == canonical for name in present):
        return canonical
    known = sorted(set(present)) or ["(none)"]
    aliases = ", ".join(f"{short}={full}" for short, full in SUBSET_ALIASES.items())
    raise UserError(f"no video of subset '{subset}' in the ground truth; its subsets are {', '.join(known)} "
                    f"(aliases: {aliases}). Pass --subset with one of them")


def load_ground_truth(path: str, subset: str = "validation") -> GroundTruth:
    """The labelled videos of one subset of an annotation JSON (ours, the originals', ActivityNet v1.3)."""
    from resnet3d.data.annotations import activitynet_classes, entry_subset

    data = _read_json(path, "ground truth")
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise UserError(f"ground truth {path}: no 'database' object; pass the annotation JSON the model was tested on")
    if isinstance(data.get("labels"), list):
        class_names = [str(name) for name in data["labels"]]
    elif isinstance(data.get("taxonomy"), list):
        class_names = activitynet_classes(data["taxonomy"], path)
    else:
        raise UserError(f"ground truth {path}: no 'labels' list (or ActivityNet 'taxonomy')")
    present = [str(v.get("subset")) for v in data["database"].values() if isinstance(v, dict)]
    name = subset_name(subset, present)
    labels: Dict[str, List[str]] = {}
    unlabelled: List[str] = []
    exact = name in present  # else the entries are matched by their subset's meaning
    for key, value in data["database"].items():
        if not isinstance(value, dict):
            continue
        if (value.get("subset") != name) if exact else (entry_subset(value.get("subset")) != name):
            continue
        annotations = value.get("annotations")
        if isinstance(annotations, dict):
            found = [annotations["label"]] if "label" in annotations else []
        elif isinstance(annotations, list):
            found = [a["label"] for a in annotations if isinstance(a, dict) and "label" in a]
        else:
            found = []
        if found:
            labels[str(key)] = list(dict.fromkeys(str(label) for label in found))
        else:
            unlabelled.append(str(key))
    if not labels:
        raise UserError(f"ground truth {path}: the {name} videos carry no labels (a test subset?); "
                        "evaluate a subset with annotations, e.g. --subset validation")
    return GroundTruth(path=str(path), subset=name, class_names=class_names, labels=labels, unlabelled=unlabelled)


def _ranked(entry: Any, path: str, video_id: str) -> List[str]:
    """A result entry -> labels, best first. Per-segment entries (``--inference_no_average``) are
    averaged first, as the video's score is the mean over its windows."""
    if isinstance(entry, list) and entry and isinstance(entry[0], dict) and "result" in entry[0]:
        totals: Dict[str, float] = {}
        for segment in entry:
            for item in segment.get("result", []):
                totals[str(item["label"])] = totals.get(str(item["label"]), 0.0) + float(item["score"])
        pairs = list(totals.items())
    elif isinstance(entry, list):
        try:
            pairs = [(str(item["label"]), float(item["score"])) for item in entry]
        except (TypeError, KeyError, ValueError):
            raise UserError(f"results {path}: video '{video_id}' has entries without 'label' and 'score'") from None
    else:
        raise UserError(f"results {path}: video '{video_id}' holds a {type(entry).__name__}, expected a list of "
                        "{'label', 'score'}")
    pairs.sort(key=lambda pair: -pair[1])
    return [label for label, _ in pairs]


def load_predictions(path: str) -> Predictions:
    data = _read_json(path, "results")
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise UserError(f"results {path}: no 'results' object; expected the output of recognition "
                        "({'results': {video_id: [{'label', 'score'}, ...]}})")
    ranked = {str(k): _ranked(v, path, str(k)) for k, v in data["results"].items()}
    errors = data.get("errors") if isinstance(data.get("errors"), dict) else {}
    return Predictions(path=str(path), ranked=ranked, errors={str(k): str(v) for k, v in errors.items()})


def _without_v(name: str) -> str:
    """An ActivityNet frame-folder name ``v_<11-character youtube id>`` -> the id, as the official
    JSON keys it (some annotation files key the videos ``v_<id>`` instead: both forms match)."""
    return name[2:] if name.startswith("v_") and len(name) == 13 else name


def _bare(result_id: str) -> str:
    """The seed's ``<label>/<youtube_id>`` and ``test/<youtube_id>`` -> the part after the last '/',
    without an ActivityNet ``v_`` prefix."""
    return _without_v(result_id.rsplit("/", 1)[-1])


def match_ids(gt_keys: Sequence[str], result_ids: Sequence[str]) -> Dict[str, str]:
    """ground-truth key -> the result id that belongs to it.

    An exact id wins; then the id without the seed's ``<label>/`` prefix (and ActivityNet's ``v_``,
    on either side); then the youtube id,
    where one side names the video by it alone (the seed's results: ``abcdefghijk``; a full key
    ``abcdefghijk_000500_000510`` is another clip of that video, not this one). A youtube id shared
    by two results (or two ground-truth videos) matches nothing through that id, so no video takes
    another's result.
    """
    exact = {rid: rid for rid in result_ids}
    by_bare: Dict[str, List[str]] = {}
    by_youtube: Dict[str, List[str]] = {}
    for rid in result_ids:
        by_bare.setdefault(_bare(rid), []).append(rid)
        by_youtube.setdefault(youtube_id(_bare(rid)), []).append(rid)
    gt_youtube_count: Dict[str, int] = {}
    gt_bare_count: Dict[str, int] = {}
    for key in gt_keys:
        gt_youtube_count[youtube_id(key)] = gt_youtube_count.get(youtube_id(key), 0) + 1
        gt_bare_count[_without_v(key)] = gt_bare_count.get(_without_v(key), 0) + 1
    matched: Dict[str, str] = {}
    for key in gt_keys:
        if key in exact:
            matched[key] = key
            continue
        candidates = by_bare.get(key, [])
        if not candidates and gt_bare_count[_without_v(key)] == 1:  # ground truth keyed v_<id>, results <id>
            candidates = by_bare.get(_without_v(key), [])
        if len(candidates) == 1:
            matched[key] = candidates[0]
            continue
        yid = youtube_id(key)
        candidates = by_youtube.get(yid, [])
        one_side_bare = len(candidates) == 1 and (key == yid or _bare(candidates[0]) == yid)
        if one_side_bare and gt_youtube_count[yid] == 1:
            matched[key] = candidates[0]
    # A result taken by two keys (ground truth holding both "abc" and "v_abc", results "v_abc"):
    # the key it names exactly keeps it; without one, it is no video's
    takers: Dict[str, List[str]] = {}
    for key, rid in matched.items():
        takers.setdefault(rid, []).append(key)
    for rid, keys in takers.items():
        for key in keys if len(keys) > 1 else ():
            if key != rid:
                del matched[key]
    return matched


@dataclass
class Evaluation:
    subset: str
    k: int
    ignore: bool
    n_videos: int  # ground-truth videos of the subset
    n_matched: int  # of those, with a result
    n_results: int
    n_errors: int  # matched to an 'errors' entry of the results file
    hits: Dict[int, int]  # k -> videos whose true class is in the top k
    class_names: List[str]
    per_class: List[Dict[str, Any]]
    confusion: List[List[int]]  # rows: true class, columns: top-1 prediction (matched videos only)
    unmatched_results: List[str]
    unknown_labels: List[str]
    unlabelled: List[str] = field(default_factory=list)  # ground-truth videos without a label (left out)
    labels_not_listed: List[str] = field(default_factory=list)  # ground-truth labels not in the list

    @property
    def denominator(self) -> int:
        return self.n_matched if self.ignore else self.n_videos

    def accuracy(self, k: int) -> float:
        return self.hits[k] / self.denominator if self.denominator else 0.0

    @property
    def mean_class_accuracy(self) -> float:
        rows = [row["top1"] for row in self.per_class if row["videos"]]
        return sum(rows) / len(rows) if rows else 0.0

    def summary(self) -> Dict[str, Any]:
        return {
            "subset": self.subset,
            "k": self.k,
            "ignore": self.ignore,
            "videos": self.n_videos,
            "with_result": self.n_matched,
            "unreadable": self.n_errors,
            "results": self.n_results,
            "top1": self.accuracy(1),
            f"top{self.k}": self.accuracy(self.k),
            "mean_class_top1": self.mean_class_accuracy,
            "per_class": self.per_class,
            "unmatched_results": len(self.unmatched_results),
            "labels_not_in_ground_truth": self.unknown_labels,
            "unlabelled_videos": len(self.unlabelled),
            "ground_truth_labels_not_listed": self.labels_not_listed,
        }


def evaluate(gt: GroundTruth, predictions: Predictions, k: int = 1, ignore: bool = False) -> Evaluation:
    if k < 1:
        raise UserError(f"-k must be >= 1 (got {k})")
    keys = list(gt.labels)
    matched = match_ids(keys, list(predictions.ranked))
    error_matches = match_ids([key for key in keys if key not in matched], list(predictions.errors))
    if not matched:
        first_result = next(iter(predictions.ranked), "(none)")
        raise UserError(
            f"none of the {len(predictions.ranked)} results in {predictions.path} matches a {gt.subset} video of "
            f"{gt.path} (first result id '{first_result}', first ground-truth key '{keys[0]}'); check that both "
            "files describe the same data set and that --subset is the subset that was tested")
    index = {name: i for i, name in enumerate(gt.class_names)}
    n = len(gt.class_names)
    confusion = [[0] * n for _ in range(n)]
    hits = {1: 0, k: 0}
    class_videos = [0] * n
    class_hits = [0] * n
    for key in keys:
        truth = gt.labels[key]
        rid = matched.get(key)
        first_class = index.get(truth[0])
        if first_class is not None:
            class_videos[first_class] += 1
        if rid is None:
            continue
        ranked = predictions.ranked[rid]
        for kk in hits:
            if any(label in truth for label in ranked[:kk]):
                hits[kk] += 1
        top1 = ranked[0] if ranked else None
        if first_class is not None:
            if top1 in truth:
                class_hits[first_class] += 1
            if top1 in index:
                confusion[first_class][index[top1]] += 1
    if ignore:
        # the per-class table follows the same denominator as the accuracy
        class_videos = [0] * n
        for key in matched:
            first_class = index.get(gt.labels[key][0])
            if first_class is not None:
                class_videos[first_class] += 1
    per_class = [{"class": name, "videos": class_videos[i], "top1_correct": class_hits[i],
                  "top1": class_hits[i] / class_videos[i] if class_videos[i] else 0.0}
                 for i, name in enumerate(gt.class_names)]
    used = set(matched.values())
    unmatched = [rid for rid in predictions.ranked if rid not in used]
    unknown_predicted = sorted({label for rid in used for label in predictions.ranked[rid][:k] if label not in index})
    return Evaluation(subset=gt.subset, k=k, ignore=ignore, n_videos=len(keys), n_matched=len(matched),
                      n_results=len(predictions.ranked), n_errors=len(error_matches), hits=hits,
                      class_names=gt.class_names, per_class=per_class, confusion=confusion,
                      unmatched_results=unmatched, unknown_labels=unknown_predicted,
                      unlabelled=list(gt.unlabelled), labels_not_listed=gt.labels_not_listed)


def format_report(result: Evaluation, per_class: bool = True, max_rows: Optional[int] = None) -> str:
    """The printed report: counts, top-1/top-k, mean class accuracy, then the per-class table."""
    videos_word = "video" if result.n_videos == 1 else "videos"
    lines = [f"subset {result.subset}: {result.n_videos} {videos_word}, {result.n_matched} with a result"
             + (f", {result.n_errors} unreadable" if result.n_errors else "")
             + (f" ({len(result.unmatched_results)} {'result' if len(result.unmatched_results) == 1 else 'results'} "
                "matched no video)" if result.unmatched_results else "")]
    if result.unlabelled:  # (the successor's evaluation stopped at such an entry)
        lines.append(f"{len(result.unlabelled)} {result.subset} entries carry no label (e.g. '{result.unlabelled[0]}'): "
                     "left out of every figure below")
    if result.labels_not_listed:
        lines.append(f"ground-truth labels missing from the annotation's label list: "
                     f"{', '.join(result.labels_not_listed[:5])}: their videos count in the accuracy, in no class")
    basis = f"of the {result.denominator} videos {'with a result' if result.ignore else 'in the subset'}"
    lines.append(f"top-1 accuracy: {result.accuracy(1):.4f}  ({result.hits[1]} {basis})")
    if result.k != 1:
        lines.append(f"top-{result.k} accuracy: {result.accuracy(result.k):.4f}  ({result.hits[result.k]} {basis})")
    lines.append(f"mean class accuracy (top-1): {result.mean_class_accuracy:.4f}")
    if per_class:
        rows = [row for row in result.per_class if row["videos"]]
        rows.sort(key=lambda row: (row["top1"], row["class"]))
        if max_rows is not None and len(rows) > max_rows:
            rows = rows[:max_rows]
            lines.append(f"per class (the {max_rows} weakest; all in --output):")
        else:
            lines.append("per class:")
        width = max([len(row["class"]) for row in rows] + [5])
        lines.append(f"  {'class'.ljust(width)}  videos  correct  top-1")
        for row in rows:
            lines.append(f"  {row['class'].ljust(width)}  {row['videos']:6d}  {row['top1_correct']:7d}  {row['top1']:.4f}")
    return "\n".join(lines)


def write_summary(result: Evaluation, path: Path) -> None:
    from resnet3d.fileio import atomic_write_json

    atomic_write_json(path, result.summary(), indent=2)


def write_confusion(result: Evaluation, path: Path) -> None:
    from resnet3d.report import plot_confusion_matrix

    title = f"{result.subset}: top-1 {result.accuracy(1):.3f}, mean class {result.mean_class_accuracy:.3f}"
    plot_confusion_matrix(result.confusion, result.class_names, Path(path), title=title)


__all__ = ["GroundTruth", "Predictions", "Evaluation", "load_ground_truth", "load_predictions", "match_ids",
           "evaluate", "format_report", "write_summary", "write_confusion", "subset_name"]
