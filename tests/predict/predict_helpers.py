"""Helpers shared by the recognition tests (imported by name: tests have no packages)."""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

SIZE, DURATION = 32, 8


def recognition_config(motion, result_path, *, flavour: str = "successor", file_type: str = "jpg",
                       stride: int = DURATION, crop: str = "center", average: bool = True, top_k: int = 5,
                       batch_size: int = 4, workers: int = 0, **data_changes: Any):
    from resnet3d.config import Config, InferenceConfig, RunConfig
    from resnet3d.data import DataConfig

    video_path = motion.jpg_path if file_type == "jpg" else motion.video_path
    data = DataConfig(dataset=motion.dataset, video_path=video_path, annotation_path=motion.annotation_path,
                      file_type=file_type, sample_size=SIZE, sample_duration=DURATION, num_workers=workers)
    if data_changes:
        data = dataclasses.replace(data, **data_changes)
    return Config(data=data, run=RunConfig(result_path=str(result_path), batch_size=batch_size),
                  inference=InferenceConfig(flavour=flavour, subset="val", stride=stride, crop=crop,
                                            average=average, top_k=top_k, batch_size=batch_size))


class ClipCounter:
    """Counts the clips a model is run on (to prove what --resume skips), through a forward hook,
    so the model and its weights stay exactly as they are. Use as a context manager."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.clips = 0
        self.shapes = []
        self._handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: tuple) -> None:
        self.clips += args[0].shape[0]
        self.shapes.append(tuple(args[0].shape))

    def __enter__(self) -> "ClipCounter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()


def as_two_ranks(monkeypatch, work):
    """``work(rank)`` as the two processes of a distributed run, rank 0 in this (the main) thread
    and rank 1 in another; returns each rank's result, or the exception that ended it. The patched
    broadcast and gather are rendezvous, as torch.distributed's are; a rank that ends with an
    exception breaks them, so the other's next collective fails at once, as gloo's does when a
    peer's connection closes. (A run in threads needs ``fold_bn`` off: folding traces the model
    with torch.fx, which patches module globals for the whole process while it traces.)"""
    import threading

    from resnet3d.engine import distributed

    rendezvous = threading.Barrier(2, timeout=60)
    slots = [None, None]

    def rank():
        return 0 if threading.current_thread() is threading.main_thread() else 1

    def exchange(obj):
        """Both ranks' objects, once both ranks have handed theirs in."""
        slots[rank()] = obj
        rendezvous.wait()
        both = list(slots)
        rendezvous.wait()  # (neither rank refills a slot before the other has read it)
        return both

    def gather(obj, group=None):
        both = exchange(obj)
        return both if rank() == 0 else None

    monkeypatch.setattr(distributed, "broadcast_object", lambda obj, group=None: exchange(obj)[0])
    monkeypatch.setattr(distributed, "gather_object", gather)
    outcomes = [None, None]

    def run(number):
        try:
            outcomes[number] = work(number)
        except BaseException as error:  # returned to the test
            outcomes[number] = error
            rendezvous.abort()

    thread = threading.Thread(target=run, args=(1,))
    thread.start()
    run(0)
    thread.join(60)
    assert not thread.is_alive()
    return outcomes


class StopAt:
    """Raises KeyboardInterrupt (a Ctrl-C) at the model's ``batch``-th call (1-based), through a
    forward hook. Use as a context manager."""

    def __init__(self, model: torch.nn.Module, batch: int = 1) -> None:
        self.calls = 0
        self.batch = batch
        self._handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: tuple) -> None:
        self.calls += 1
        if self.calls >= self.batch:
            raise KeyboardInterrupt

    def __enter__(self) -> "StopAt":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()
