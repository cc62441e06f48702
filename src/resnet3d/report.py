"""PNG reports: the training curves (refreshed every epoch) and confusion matrices.

matplotlib is imported inside each function with the Agg backend, so no display is needed and
commands that never plot never import it. Files are written atomically: a viewer refreshing
curves.png during training never sees half a PNG.
"""
from __future__ import annotations

import functools
import io
import logging
import math
import warnings
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

from resnet3d.fileio import atomic_write_bytes

log = logging.getLogger("resnet3d.report")
# matplotlib's warning for each character its font cannot draw (once per glyph and figure)
_MISSING_GLYPH = r"Glyph \d+ .*missing from"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _charmap(path: str) -> FrozenSet[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


@functools.lru_cache(maxsize=8)
def _fallback_font(needed: FrozenSet[int]) -> Tuple[Optional[str], FrozenSet[int]]:
    """The installed font (matplotlib's font manager) that draws most of ``needed`` (code points),
    and those it draws. "Last Resort" fonts are left out: they draw every character as a box."""
    from matplotlib import font_manager

    best: Tuple[Optional[str], FrozenSet[int]] = (None, frozenset())
    seen = set()
    for entry in font_manager.fontManager.ttflist:
        if entry.fname in seen or entry.name.lower().startswith("last resort"):
            continue
        seen.add(entry.fname)
        covered = needed & _charmap(entry.fname)
        if len(covered) > len(best[1]):
            best = (entry.name, covered)
            if covered == needed:
                break
    return best


def font_families(texts: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Fonts for drawing ``texts`` (class names in any script): matplotlib's default, then one
    installed font with the characters it lacks (a CJK font for Chinese names; matplotlib falls
    back glyph by glyph). Also the texts that no installed font can draw whole."""
    import matplotlib
    from matplotlib import font_manager

    default_path = font_manager.findfont(font_manager.FontProperties(family=matplotlib.rcParams["font.family"]))
    default_name = font_manager.FontProperties(fname=default_path).get_name()
    drawn = _charmap(default_path)
    needed = frozenset(ord(c) for text in texts for c in str(text) if not c.isspace() and ord(c) not in drawn)
    families = [default_name]
    if needed:
        name, covered = _fallback_font(needed)
        if name is not None:
            families.append(name)
            drawn = drawn | covered
    missing = [text for text in texts if any(not c.isspace() and ord(c) not in drawn for c in str(text))]
    return families, missing


def _column(rows: Sequence[Dict[str, str]], name: str) -> List[float]:
    values = []
    for row in rows:
        text = row.get(name, "")
        try:
            values.append(float(text))
        except (TypeError, ValueError):
            values.append(math.nan)
    return values


def _save(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def plot_curves(train_rows: Sequence[Dict[str, str]], val_rows: Sequence[Dict[str, str]], path: Path,
                title: Optional[str] = None) -> None:
    """Loss (left) and accuracy (right) per epoch, from the rows of train.log and val.log."""
    plt = _pyplot()
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(11, 4))
    try:
        if train_rows:
            epochs = _column(train_rows, "epoch")
            loss_axis.plot(epochs, _column(train_rows, "loss"), marker=".", label="train")
            acc_axis.plot(epochs, _column(train_rows, "acc"), marker=".", label="train (clips)")
        if val_rows:
            epochs = _column(val_rows, "epoch")
            loss_axis.plot(epochs, _column(val_rows, "loss"), marker=".", label="validation")
            acc_axis.plot(epochs, _column(val_rows, "acc"), marker=".", label="validation (clips)")
            video = _column(val_rows, "video_acc")
            if any(not math.isnan(v) for v in video):
                acc_axis.plot(epochs, video, marker=".", label="validation (videos)")
        loss_axis.set(xlabel="epoch", ylabel="loss", title="loss")
        losses = [y for line in loss_axis.lines for y in line.get_ydata() if y > 0 and math.isfinite(y)]
        if losses and max(losses) > 20 * min(losses):
            loss_axis.set_yscale("log")  # an early spike (first epochs' BN statistics) would flatten the rest
        acc_axis.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0.0, 1.0))
        for axis in (loss_axis, acc_axis):
            axis.grid(alpha=0.3)
            if axis.lines:
                axis.legend()
        if title:
            figure.suptitle(title)
        figure.tight_layout()
        _save(figure, Path(path))
    finally:
        plt.close(figure)


def plot_confusion_matrix(matrix, class_names: Sequence[str], path: Path, title: str = "confusion matrix",
                          normalize: bool = True) -> None:
    """Rows are the true classes, columns the predictions; rows normalised to 1 by default.

    Class names are written on the axes up to 60 classes; larger matrices show indices only.
    Names in scripts the default font lacks (Chinese, Japanese, ...) take an installed font that
    has them; without one they show as boxes, said in one line instead of matplotlib's warning per
    glyph.
    """
    import numpy as np

    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.float64)
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0) if normalize else counts
    names = [str(name) for name in class_names] if counts.shape[0] <= 60 else []
    families, missing = font_families(names + [title])
    with plt.rc_context({"font.family": families}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_MISSING_GLYPH, category=UserWarning)
        _draw_confusion(plt, shown, names, Path(path), title, normalize)
    missing = [name for name in missing if name != title]
    if missing:
        log.warning("%s: no installed font draws %d of the class names (e.g. '%s'), so they show as boxes; install "
                    "a font that has them (for Chinese, Japanese or Korean: Noto Sans CJK) and draw it again",
                    path, len(missing), missing[0])


def _draw_confusion(plt, shown, class_names: Sequence[str], path: Path, title: str, normalize: bool) -> None:
    n = shown.shape[0]
    side = min(max(6.0, 0.25 * n + 2.0), 30.0)
    figure, axis = plt.subplots(figsize=(side, side))
    try:
        image = axis.imshow(shown, cmap="Blues", interpolation="nearest", vmin=0.0,
                            vmax=1.0 if normalize else None)
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
        if class_names:
            axis.set_xticks(range(n))
            axis.set_yticks(range(n))
            axis.set_xticklabels(class_names, rotation=90, fontsize=7)
            axis.set_yticklabels(class_names, fontsize=7)
        axis.set(xlabel="predicted", ylabel="true", title=title)
        figure.tight_layout()
        _save(figure, Path(path))
    finally:
        plt.close(figure)
