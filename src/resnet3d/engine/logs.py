"""The run's log files, as the successor writes them: tab-separated, one header line.

- ``train.log``        epoch loss acc lr
- ``train_batch.log``  epoch batch iter loss acc lr
- ``val.log``          epoch loss acc video_acc   (video_acc is ours, an extra last column)

A continued run keeps the rows of the epochs it continues from and drops later ones (they belong
to the abandoned part of the earlier run), so every log of a continued run reads like the log of
an unbroken one. Rows are appended and flushed one at a time; the one rewrite (on continue) is
atomic. Numbers are written in full precision (``repr``) so runs can be compared exactly.

``TensorBoardLog`` mirrors the same numbers to TensorBoard when ``--tensorboard`` is given
(imported only then).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Callable, Dict, IO, List, Optional, Sequence

from resnet3d.errors import UserError, missing_package
from resnet3d.fileio import atomic_write_text

TRAIN_COLUMNS = ("epoch", "loss", "acc", "lr")
TRAIN_BATCH_COLUMNS = ("epoch", "batch", "iter", "loss", "acc", "lr")
VAL_COLUMNS = ("epoch", "loss", "acc", "video_acc")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def read_log(path: Path) -> List[Dict[str, str]]:
    """Rows of a tab-separated log as dicts (strings); [] when the file does not exist."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def rows_through(epoch: int, batch: int = 0) -> Callable[[Dict[str, str]], bool]:
    """The rows a run continued after ``epoch`` (and ``batch`` steps of the next) keeps."""

    def keep(row: Dict[str, str]) -> bool:
        row_epoch = int(float(row["epoch"]))
        if row_epoch <= epoch:
            return True
        return bool(batch) and row_epoch == epoch + 1 and "batch" in row and int(float(row["batch"])) <= batch

    return keep


class TSVLog:
    def __init__(self, path: Path, columns: Sequence[str],
                 keep: Optional[Callable[[Dict[str, str]], bool]] = None) -> None:
        """Open ``path`` for appending rows. ``keep`` continues an earlier run: the rows it
        accepts (see ``rows_through``) stay, the others go; None starts a new file."""
        self.path = Path(path)
        self.columns = tuple(columns)
        kept = ""
        if keep is not None and self.path.is_file():
            kept = self._kept_rows(keep)
        atomic_write_text(self.path, "\t".join(self.columns) + "\n" + kept)
        self._handle: Optional[IO[str]] = self.path.open("a", encoding="utf-8", newline="")

    def _kept_rows(self, keep: Callable[[Dict[str, str]], bool]) -> str:
        out = io.StringIO()
        with self.path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            if reader.fieldnames is None:
                return ""
            if "epoch" not in reader.fieldnames:
                raise UserError(f"{self.path}: no 'epoch' column in the header; move the file away to start a new log")
            writer = csv.writer(out, delimiter="\t", lineterminator="\n")
            for row in reader:
                try:
                    wanted = keep(row)
                except (TypeError, ValueError):
                    continue  # a damaged line (e.g. cut by a crash) is dropped
                if wanted:
                    # Old files may lack our extra columns: pad so the columns stay aligned.
                    writer.writerow([row.get(c) or "" for c in self.columns])
        return out.getvalue()

    def log(self, **values: Any) -> None:
        missing = [c for c in self.columns if c not in values]
        if missing:
            raise ValueError(f"{self.path.name}: missing columns {missing}")
        assert self._handle is not None, "log is closed"
        self._handle.write("\t".join(_format(values[c]) for c in self.columns) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __del__(self) -> None:  # the successor's Logger never closed (a misspelled __del)
        self.close()


class TensorBoardLog:
    def __init__(self, log_dir: Path, purge_step: Optional[int] = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # pragma: no cover - depends on the environment
            raise missing_package("--tensorboard", "tensorboard", "tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, epoch: int, **values: float) -> None:
        for name, number in values.items():
            self.writer.add_scalar(name, number, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class NullLog:
    """Stands in for every log on ranks other than 0."""

    def log(self, **values: Any) -> None:
        pass

    def scalars(self, epoch: int, **values: float) -> None:
        pass

    def close(self) -> None:
        pass
