"""Finding the videos under VIDEO_DIR and naming each one's frame folder under FRAME_DIR.

Layouts (REFERENCE.md §1):

- ``kinetics``, ``ucf101``, ``hmdb51``: ``VIDEO_DIR/<class>/<name>.<ext>`` ->
  ``<class>/<name>/``; Kinetics' test set is the folder ``test/`` and maps to ``test/<name>/``.
- ``activitynet``: ``VIDEO_DIR/<name>.<ext>`` -> ``v_<youtube id>/`` (files already named
  ``v_<id>.mp4``, as the official crawler writes them, keep their name).
- ``flat``: ``VIDEO_DIR/<name>.<ext>`` -> ``<name>/``.
- ``splits``: split folders of class folders, ``VIDEO_DIR/<split>/<class>/<name>.<ext>`` ->
  ``<class>/<name>/``, every split into the one FRAME_DIR where the annotation JSON looks (Moments
  in Time's ``training/`` and ``validation/``, Kinetics' ``train/`` and ``val/``). A split folder
  of loose videos is read as one class, as the class layout reads Kinetics' ``test/``:
  ``test/<name>.<ext>`` -> ``test/<name>/``; so a single split folder given alone, its class
  folders holding the videos themselves, gives ``<class>/<name>/`` too, as the class layout does
  (each class folder reads as a split folder of loose videos). A folder holding both loose videos
  and folders of videos is a class folder or a split folder, and says nothing of which: it stops
  the run, naming it.

Without a layout, class subfolders mean the class layout and loose files mean flat: split
folders are never guessed, since ``<class>/<day>/<video>`` has the same shape.

With an annotation JSON instead (``--annotation``), videos are found anywhere under VIDEO_DIR by
name and placed where training looks for them: ``<label>/<key>/`` (``test/<key>/`` for
unlabelled test videos), or ``v_<id>/`` for ActivityNet entries. This serves downloads that are
not sorted into class folders, such as Kinetics split folders of ``<key>.mp4`` files.
"""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from resnet3d.errors import UserError
from resnet3d.video_files import VIDEO_EXTENSIONS, video_files_below

LAYOUTS = ("kinetics", "activitynet", "ucf101", "hmdb51", "flat", "splits")
CLASS_LAYOUTS = ("kinetics", "ucf101", "hmdb51")
SPLIT_FILE_LAYOUTS = {"ucf101": "ucf101-json", "hmdb51": "hmdb51-json"}  # the lists give each video's class
YOUTUBE_ID_LENGTH = 11
TEST_FOLDER = "test"  # where Kinetics keeps its unlabelled test videos
KINETICS_KEY = re.compile(r"^.+_\d{6}_\d{6}$")  # <youtube_id>_<time_start:06d>_<time_end:06d>


def activitynet_folder_name(stem: str) -> str:
    """``v_<id>`` for a video named ``<id>`` or ``v_<id>``.

    A YouTube id is 11 characters and may itself start with ``v_``, so an 11-character ``v_...``
    stem is a bare id; any other ``v_...`` stem (``v_`` + an 11-character id, or an id of another
    length, as in a data set of one's own) is already prefixed.
    """
    if stem.startswith("v_") and len(stem) != YOUTUBE_ID_LENGTH:
        return stem
    return f"v_{stem}"


@dataclass(frozen=True)
class VideoJob:
    video: Path
    output: Path  # frame folder relative to FRAME_DIR (HDF5: this path + ".hdf5")


@dataclass
class VideoList:
    layout: str
    jobs: List[VideoJob]
    duplicates: List[Tuple[Path, str]] = field(default_factory=list)  # (video, reason)
    ignored: List[Path] = field(default_factory=list)  # videos the layout does not cover
    missing: List[str] = field(default_factory=list)  # annotation keys without a video


def _videos_in(folder: Path) -> List[Path]:
    """The videos directly in ``folder``, by name; a dangling link named like a video too (its
    extraction fails and is listed, where leaving it out would lose it without a word)."""
    return list(video_files_below(folder, max_depth=0))


def _class_dirs(video_dir: Path) -> List[Path]:
    return sorted(p for p in video_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def detect_layout(video_dir: Path) -> str:
    loose = _videos_in(video_dir)
    classes = [d for d in _class_dirs(video_dir) if _videos_in(d)]
    if loose and classes:
        raise UserError(
            f"{video_dir} holds both loose videos (e.g. '{loose[0].name}') and class folders "
            f"(e.g. '{classes[0].name}/'): pass --layout flat for the loose videos or "
            "--layout kinetics/ucf101/hmdb51 for the class folders"
        )
    if classes:
        return "kinetics"
    if loose:
        return "flat"
    deeper = _deeper_videos(video_dir)
    if deeper:  # split folders of class folders (train/<class>/<video>), a level too high
        raise UserError(
            f"no video directly in {video_dir} or in its class folders, only deeper (e.g. {deeper[0]}): prepare frames "
            "reads VIDEO_DIR/<class>/<video> or VIDEO_DIR/<video>; for split folders of class folders pass "
            f"{SPLITS_HINT}; else give the folder that holds the class folders (or the videos) as VIDEO_DIR, or pass "
            "--annotation JSON, which finds videos at any depth"
        )
    raise UserError(
        f"no videos ({', '.join(e[1:] for e in VIDEO_EXTENSIONS)}) in {video_dir} or its subfolders"
    )


def annotation_folders(path: Path) -> Dict[str, Path]:
    """key -> the folder training expects for it (relative to the frame directory)."""
    try:
        with open(path, "r", encoding="utf-8-sig") as handle:
            database = json.load(handle)["database"]
        items = list(database.items())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{path}: not an annotation JSON with a 'database' object ({error})") from None
    folders: Dict[str, Path] = {}
    for key, entry in items:
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        if isinstance(annotations, list):  # ActivityNet: one folder per video, v_<key> as training reads it
            folders[key] = Path(f"v_{key}")
        else:
            label = annotations.get("label") if isinstance(annotations, dict) else None
            folders[key] = Path(label or TEST_FOLDER) / key
    return folders


def _find_by_annotation(video_dir: Path, annotation: Path) -> VideoList:
    folders = annotation_folders(annotation)
    # Kinetics keys end in _<start:06d>_<end:06d> (14 characters); a file named by the bare
    # YouTube id still finds its key when only one key has that id.
    by_id: Dict[str, List[str]] = {}
    for key in folders:
        if KINETICS_KEY.match(key):  # (other data sets' keys have no id to strip)
            by_id.setdefault(key[:-14], []).append(key)
    jobs: List[VideoJob] = []
    ignored: List[Path] = []
    for video in video_files_below(video_dir):  # at any depth, symlinked folders followed
        key = video.stem
        if key not in folders:
            stripped = key[2:] if key.startswith("v_") else key
            candidates = [stripped] if stripped in folders else by_id.get(key, [])
            if len(candidates) != 1:
                ignored.append(video)
                continue
            key = candidates[0]
        jobs.append(VideoJob(video, folders[key]))
    found = {job.output for job in jobs}
    missing = [key for key, folder in folders.items() if folder not in found]
    return VideoList(layout="annotation", jobs=jobs, ignored=ignored, missing=missing)


def find_videos(video_dir: Path, layout: Optional[str] = None, annotation: Optional[Path] = None) -> VideoList:
    """Every video the layout (or the annotation) covers, sorted, each with its output folder."""
    if video_dir.is_file():
        raise UserError(f"{video_dir} is a file: prepare frames takes the folder that holds the videos (VIDEO_DIR); "
                        "for one video, give a folder holding it (its frames go to FRAME_DIR/<name>/)")
    if not video_dir.is_dir():
        raise UserError(f"video directory {video_dir} does not exist (or is not a directory)")
    if annotation is not None:
        found = _find_by_annotation(video_dir, annotation)
        if not found.jobs:
            _nothing_listed(video_dir, annotation, found)
        return _deduplicate(found)
    if layout is None:
        layout = detect_layout(video_dir)
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout '{layout}'; choose one of {', '.join(LAYOUTS)}")
    jobs: List[VideoJob] = []
    ignored: List[Path] = []
    loose: List[Path] = []
    if layout == "splits":
        jobs, ignored = _split_folder_jobs(video_dir)
    elif layout in CLASS_LAYOUTS:
        loose = _videos_in(video_dir)
        ignored.extend(loose)
        hollow: List[Tuple[Path, Path]] = []  # (class folder, a video below it)
        for class_dir in _class_dirs(video_dir):
            direct = _videos_in(class_dir)
            for video in direct:
                jobs.append(VideoJob(video, Path(class_dir.name) / video.stem))
            # below a class folder no layout looks: counted, with examples (depth-bounded: a frame
            # folder tree kept inside VIDEO_DIR would otherwise be walked to its last JPEG folder)
            below = list(video_files_below(class_dir, min_depth=1, max_depth=2))
            ignored.extend(below)
            if below and not direct:
                hollow.append((class_dir, below[0]))
        if hollow and jobs:
            _refuse_hollow_class_folders(video_dir, layout, hollow)
    else:
        for video in _videos_in(video_dir):
            name = activitynet_folder_name(video.stem) if layout == "activitynet" else video.stem
            jobs.append(VideoJob(video, Path(name)))
        for sub in _class_dirs(video_dir):
            ignored.extend(video_files_below(sub, max_depth=2))
    if not jobs:
        _nothing_in_layout(video_dir, layout, loose if layout in CLASS_LAYOUTS else ignored)
    return _deduplicate(VideoList(layout=layout, jobs=jobs, ignored=ignored))


LAYOUT_SHAPES = {
    "kinetics": "VIDEO_DIR/<class>/<video> -> FRAME_DIR/<class>/<video>/",
    "ucf101": "VIDEO_DIR/<class>/<video> -> FRAME_DIR/<class>/<video>/",
    "hmdb51": "VIDEO_DIR/<class>/<video> -> FRAME_DIR/<class>/<video>/",
    "activitynet": "VIDEO_DIR/<video> -> FRAME_DIR/v_<id>/",
    "flat": "VIDEO_DIR/<video> -> FRAME_DIR/<video>/",
    "splits": "VIDEO_DIR/<split>/<class>/<video> -> FRAME_DIR/<class>/<video>/",
}
SPLITS_HINT = (f"--layout splits ({LAYOUT_SHAPES['splits']}, every split into this one FRAME_DIR, as Moments in "
               "Time's training/ and validation/ and Kinetics' train/ and val/ need)")


def _split_folder_jobs(video_dir: Path) -> Tuple[List[VideoJob], List[Path]]:
    """``--layout splits``: (jobs, ignored videos). Each split folder's class folders hold the
    videos; a split folder without them whose videos are loose is one class (``test/``)."""
    jobs: List[VideoJob] = []
    ignored: List[Path] = _videos_in(video_dir)  # beside the split folders: no class to give them
    hollow: List[Tuple[Path, Path]] = []  # (class folder, a video below it)
    mixed: List[Tuple[Path, Path, Path]] = []  # (split folder, a loose video, a video in its subfolders)
    for split_dir in _class_dirs(video_dir):
        in_subfolders: List[Path] = []
        for class_dir in _class_dirs(split_dir):
            direct = _videos_in(class_dir)
            jobs.extend(VideoJob(video, Path(class_dir.name) / video.stem) for video in direct)
            below = list(video_files_below(class_dir, min_depth=1, max_depth=2))  # depth-bounded, as in the class layout
            ignored.extend(below)
            in_subfolders.extend((direct + below)[:1])
            if below and not direct:
                hollow.append((class_dir, below[0]))
        loose = _videos_in(split_dir)
        if loose and in_subfolders:
            mixed.append((split_dir, loose[0], in_subfolders[0]))
        elif loose:
            jobs.extend(VideoJob(video, Path(split_dir.name) / video.stem) for video in loose)
    if mixed:
        _refuse_class_or_split_folders(video_dir, mixed)
    if hollow and jobs:
        _refuse_hollow_class_folders(video_dir, "splits", hollow)
    return jobs, ignored


def _refuse_class_or_split_folders(video_dir: Path, mixed: List[Tuple[Path, Path, Path]]) -> None:
    """A folder of VIDEO_DIR holding loose videos and folders of videos is a class folder (with a
    subfolder of takes) when VIDEO_DIR is one split folder, and a split folder (with stray videos)
    when VIDEO_DIR holds split folders; either reading drops videos of the other. Read as a split
    folder, Moments in Time's ``training/`` given alone lost a class's own videos without a word."""
    folder, loose, deeper = mixed[0]
    raise UserError(
        f"{folder}/ holds both loose videos (e.g. {loose}) and folders of videos (e.g. {deeper})"
        f"{_and_more([f for f, _, _ in mixed])}, so --layout splits cannot tell whether it is a class folder or a "
        f"split folder of class folders ({LAYOUT_SHAPES['splits']}): if {video_dir} is one split folder, whose "
        f"subfolders are classes, pass --layout kinetics ({LAYOUT_SHAPES['kinetics']}; videos in a class folder's "
        f"subfolders are then counted as ignored); if it holds split folders, move the loose videos of {folder}/ "
        f"into class folders, or out of {video_dir}. Nothing written"
    )


def _and_more(folders: List[Path]) -> str:
    """`` (and N more: a, b, c)`` after the first of ``folders`` an error names."""
    if len(folders) < 2:
        return ""
    return f" (and {len(folders) - 1} more: {', '.join(str(f) for f in folders[1:4])})"


def _deeper_videos(video_dir: Path) -> List[Path]:
    """Videos two or more folders below VIDEO_DIR, where no layout looks (the first few)."""
    # symlinked folders are followed, as extraction follows them
    return list(itertools.islice(video_files_below(video_dir, min_depth=2, max_depth=5), 3))


def _nothing_in_layout(video_dir: Path, layout: str, ignored: List[Path]) -> None:
    """No video where ``layout`` looks: say what it expects, what is there, and which layout takes it."""
    expects = f"--layout {layout} reads {LAYOUT_SHAPES[layout]}"
    if ignored and layout in SPLIT_FILE_LAYOUTS:
        # training reads FRAME_DIR/<class>/<video>/: --layout flat would make frames it never finds
        command = SPLIT_FILE_LAYOUTS[layout]
        raise UserError(
            f"no video in a class folder of {video_dir}, but {len(ignored)} directly in it (e.g. {ignored[0]}): "
            f"{expects}, where training looks for them. The split files name each video's class: write the JSON "
            f"from them with this folder in place of FRAME_DIR (resnet3d prepare {command} ANNOTATION_DIR {video_dir} "
            f"OUT_DIR), then place the videos by it (resnet3d prepare frames {video_dir} FRAME_DIR --annotation "
            "OUT_DIR/<the JSON>, once per split JSON), or sort them into class folders"
        )
    if ignored and layout in CLASS_LAYOUTS:
        raise UserError(
            f"no video in a class folder of {video_dir}, but {len(ignored)} directly in it (e.g. {ignored[0]}): "
            f"{expects}; for loose videos pass --layout flat ({LAYOUT_SHAPES['flat']}) or --layout activitynet "
            f"({LAYOUT_SHAPES['activitynet']}), or sort them into class folders"
        )
    if ignored and layout == "splits":
        raise UserError(
            f"no video where --layout splits looks in {video_dir} ({expects}), but {len(ignored)} elsewhere (e.g. "
            f"{ignored[0]}): for loose "
            f"videos pass --layout flat ({LAYOUT_SHAPES['flat']}); for class folders (VIDEO_DIR/<class>/<video>) "
            "--layout kinetics; for videos deeper down give the folder that holds the split folders as VIDEO_DIR, "
            "or pass --annotation JSON, which finds videos at any depth"
        )
    if ignored and layout == "activitynet":
        # ActivityNet has no classes per video: subfolders are splits (train_val/, test/), and
        # training reads FRAME_DIR/v_<id>/ whatever folder a video came from
        raise UserError(
            f"no video directly in {video_dir}, but {len(ignored)} in its subfolders (e.g. {ignored[0]}): {expects}; "
            "pass --annotation with the ActivityNet JSON (activity_net.v1-3.min.json), which finds the videos at any "
            "depth and writes each to FRAME_DIR/v_<id>/, or give each subfolder as VIDEO_DIR"
        )
    if ignored:
        raise UserError(
            f"no video directly in {video_dir}, but {len(ignored)} in class folders (e.g. {ignored[0]}): {expects}; "
            f"for class folders pass --layout kinetics, ucf101 or hmdb51 ({LAYOUT_SHAPES['kinetics']}), or "
            "--annotation JSON to place them by the JSON's keys"
        )
    deeper = _deeper_videos(video_dir)
    if deeper:
        raise UserError(
            f"no video where --layout {layout} looks in {video_dir}, only deeper (e.g. {deeper[0]}): {expects}; "
            + ("" if layout in ("splits", "activitynet", "flat") else f"for split folders of class folders pass {SPLITS_HINT}; ")
            + "give the folder that holds the class folders (or the videos) as VIDEO_DIR, or pass --annotation JSON, "
            "which finds videos at any depth"
        )
    raise UserError(f"no videos ({', '.join(e[1:] for e in VIDEO_EXTENSIONS)}) in {video_dir} or its subfolders")


def _refuse_hollow_class_folders(video_dir: Path, layout: str, hollow: List[Tuple[Path, Path]]) -> None:
    """A class folder whose videos all sit in its subfolders would be dropped whole. Under a class
    layout it is most often a split folder (``train/<class>/<video>`` beside a ``test/`` of loose
    videos, as Kinetics downloads are laid out) read as a class; counting its videos as ignored
    left a run that extracted the test set and exited 0. Under ``splits`` it is a class folder of
    a split folder, one level deeper, whose videos belong in it."""
    folder, example = hollow[0]
    if layout == "splits":
        fix = f": move them up into {folder}/, or move the folder out of {video_dir} if it does not belong to the data set"
    else:
        fix = (
            f". If it holds a split's class folders ({folder.name}/<class>/<video>), pass {SPLITS_HINT}, or place "
            "every video by the annotation JSON with --annotation JSON (it finds videos at any depth; for Kinetics "
            "build it from the CSVs: prepare kinetics-json TRAIN_CSV VAL_CSV TEST_CSV JSON), or give each split "
            f"folder as VIDEO_DIR ({folder}); if it does not belong to the data set, move it out of {video_dir}"
        )
    raise UserError(
        f"{folder}/ holds videos only in its subfolders (e.g. {example}){_and_more([f for f, _ in hollow])}, where "
        f"--layout {layout} does not look ({LAYOUT_SHAPES[layout]}), so all of them would be left out{fix}. "
        "Nothing written"
    )


def _nothing_listed(video_dir: Path, annotation: Path, found: VideoList) -> None:
    """No video under VIDEO_DIR is named by the annotation's keys."""
    if not found.ignored:
        raise UserError(f"no videos ({', '.join(e[1:] for e in VIDEO_EXTENSIONS)}) in {video_dir} or its subfolders")
    example_key = found.missing[0] if found.missing else ""
    raise UserError(
        f"none of the {len(found.ignored)} videos under {video_dir} is named by a key of {annotation} (e.g. "
        f"{found.ignored[0].name}; the JSON's keys look like '{example_key}'): check that the JSON describes these "
        "videos, or drop --annotation and pass --layout"
    )


def _deduplicate(videos: VideoList) -> VideoList:
    """Two videos with one output folder (``a.mp4`` and ``a.mkv``): the first wins, the other fails."""
    unique: List[VideoJob] = []
    first_of: Dict[Path, Path] = {}
    duplicates: List[Tuple[Path, str]] = []
    for job in videos.jobs:
        if job.output in first_of:
            duplicates.append(
                (job.video, f"same output folder '{job.output}' as {first_of[job.output]}; rename one of them")
            )
            continue
        first_of[job.output] = job.video
        unique.append(job)
    return VideoList(videos.layout, unique, duplicates, videos.ignored, videos.missing)

