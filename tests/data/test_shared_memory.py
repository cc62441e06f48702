"""The loader checks the room in /dev/shm before its workers start, instead of a worker dying
with a bus error in the first epoch (Docker gives containers 64 MB by default)."""
from __future__ import annotations

import logging

import pytest
import torch

from resnet3d.data import DataConfig, build_dataset, build_loader, set_epoch
from resnet3d.data import shared_memory
from resnet3d.errors import UserError

MIB = 1 << 20


def test_the_prefetch_asked_for_is_kept_when_it_fits():
    assert shared_memory.fit_prefetch(10 * MIB, 4, 4, free=(4 * 4 + 2) * 10 * MIB) == 4


def test_fewer_batches_are_prefetched_when_only_those_fit(caplog):
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        fitted = shared_memory.fit_prefetch(10 * MIB, 4, 4, free=(4 * 2 + 2) * 10 * MIB + 5 * MIB)
    assert fitted == 2
    assert "/dev/shm has 105 MiB free" in caplog.text and "--shm-size" in caplog.text


def test_processes_of_one_machine_share_the_room():
    free = (4 * 4 + 2) * 10 * MIB
    assert shared_memory.fit_prefetch(10 * MIB, 4, 4, free=free, sharers=1) == 4
    assert shared_memory.fit_prefetch(10 * MIB, 4, 4, free=free, sharers=2) == 1


def test_not_even_one_batch_per_worker_stops_with_the_fix():
    with pytest.raises(UserError) as error:
        shared_memory.fit_prefetch(38 * MIB, 15, 4, free=64 * MIB)
    message = str(error.value)
    assert "/dev/shm has 64 MiB free" in message and "15 loader workers" in message
    assert "--shm-size" in message and "--n_threads" in message and "--batch_size" in message


def test_free_room_is_read_from_the_file_system(tmp_path):
    free = shared_memory.free_shared_memory(str(tmp_path))
    assert isinstance(free, int) and free > 0
    assert shared_memory.free_shared_memory(str(tmp_path / "missing")) is None


def _cfg(motion_set):
    return DataConfig(video_path=motion_set.jpg_path, annotation_path=motion_set.annotation_path, sample_size=16,
                      sample_duration=4)


def test_the_loader_prefetches_what_fits_and_still_loads(motion_set, monkeypatch, caplog):
    dataset = build_dataset(_cfg(motion_set), "training", seed=2)
    batch_bytes = 4 * 4 * 16 * 16 * 3  # 4 clips of 4 x 16 x 16 x 3 uint8
    monkeypatch.setattr(shared_memory, "free_shared_memory", lambda path=shared_memory.SHM_PATH: (2 * 1 + 2) * batch_bytes)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        loader = build_loader(dataset, 4, train=True, num_workers=2, seed=2)
    assert loader.prefetch_factor == 1 and "prefetches 1 batch(es)" in caplog.text
    set_epoch(loader, 0)
    batches = list(loader)
    assert len(batches) == 2 and batches[0]["clip"].shape == (4, 4, 16, 16, 3)
    assert batches[0]["clip"].dtype == torch.uint8


def test_a_loader_that_cannot_fit_stops_before_its_workers_start(motion_set, monkeypatch):
    dataset = build_dataset(_cfg(motion_set), "training", seed=2)
    monkeypatch.setattr(shared_memory, "free_shared_memory", lambda path=shared_memory.SHM_PATH: 100)
    with pytest.raises(UserError, match="docker run --shm-size"):
        build_loader(dataset, 4, train=True, num_workers=2, seed=2)
    assert build_loader(dataset, 4, train=True, num_workers=0).batch_size == 4  # no workers: nothing shared
