"""Accuracy and its relatives, as sums and counts so they reduce exactly across processes.

Clip accuracy counts the clips whose top-1 class is the target. Video accuracy averages the
softmax scores of a video's clips first (the successor's recognition rule), then takes top-1.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch


def correct_count(logits: torch.Tensor, targets: torch.Tensor) -> int:
    """Clips whose top-1 prediction is the target."""
    return int((logits.argmax(dim=1) == targets).sum().item())


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> Dict[int, int]:
    """Clips whose target is among the top k, for each k (k larger than the class count = all)."""
    n_classes = logits.shape[1]
    top = logits.topk(min(max(ks), n_classes), dim=1).indices  # (N, kmax)
    hits = top == targets.unsqueeze(1)
    return {k: int(hits[:, : min(k, n_classes)].any(dim=1).sum().item()) for k in ks}


class VideoScores:
    """Sums of clip scores per video: ``(n_videos, n_classes)`` plus clip counts.

    A dense table keeps the cross-process reduction to one all-reduce (Kinetics-400 validation:
    20k x 400 floats, 32 MB), and clips of one video may land on any process.
    """

    def __init__(self, targets: torch.Tensor, n_classes: int, device: torch.device | str = "cpu") -> None:
        """``targets``: each video's class index (-1 when unlabelled). The sums live on ``device``
        (the model's), so that adding a batch's scores does not wait for the batch; bring them to
        the CPU (``all_sum`` does) before ``accuracy``."""
        self.targets = torch.as_tensor(targets, dtype=torch.int64).cpu()
        self.sums = torch.zeros(len(self.targets), n_classes, dtype=torch.float64, device=device)
        self.counts = torch.zeros(len(self.targets), dtype=torch.float64, device=device)

    def add(self, videos: torch.Tensor, logits: torch.Tensor) -> None:
        videos = torch.as_tensor(videos).to(self.sums.device, torch.int64, non_blocking=True)
        scores = torch.softmax(logits.detach().float(), dim=1).to(self.sums.device, torch.float64)
        self.sums.index_add_(0, videos, scores)
        self.counts.index_add_(0, videos, torch.ones(len(videos), dtype=torch.float64, device=self.sums.device))

    def accuracy(self) -> float:
        """Top-1 accuracy over the labelled videos that got at least one clip (0.0 when none did)."""
        seen = (self.counts > 0) & (self.targets >= 0)
        if not bool(seen.any()):
            return 0.0
        predicted = self.sums[seen].argmax(dim=1)
        return float((predicted == self.targets[seen]).double().mean().item())


def confusion_matrix(predicted: torch.Tensor, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(n_classes, n_classes)`` counts: rows are the true classes, columns the predictions."""
    index = targets.to(torch.int64) * n_classes + predicted.to(torch.int64)
    return torch.bincount(index, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def mean_class_accuracy(matrix: torch.Tensor) -> float:
    """Mean over the classes that occur of (correct / occurrences)."""
    totals = matrix.sum(dim=1).double()
    present = totals > 0
    if not bool(present.any()):
        return 0.0
    return float((matrix.diag().double()[present] / totals[present]).mean().item())
