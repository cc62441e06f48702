"""The loader on real files: workers, determinism, distributed shards, pinned uint8 batches."""
from __future__ import annotations

import logging
import os

import pytest
import torch

from resnet3d.data import ClipSampler, DataConfig, build_dataset, build_loader, set_epoch


def _cfg(motion_set, **changes):
    return DataConfig(video_path=motion_set.jpg_path, annotation_path=motion_set.annotation_path, sample_size=16, sample_duration=4, **changes)


def test_two_workers_give_the_same_batches_as_none(motion_set):
    dataset = build_dataset(_cfg(motion_set), "training", seed=5)
    batches = {}
    for workers in (0, 2):
        loader = build_loader(dataset, 4, train=True, num_workers=workers, seed=5)
        set_epoch(loader, 3)
        batches[workers] = list(loader)
    assert len(batches[0]) == len(batches[2]) == 2  # 8 training videos
    for a, b in zip(batches[0], batches[2]):
        assert torch.equal(a["clip"], b["clip"]) and torch.equal(a["target"], b["target"])
        assert a["clip"].dtype == torch.uint8 and a["clip"].shape == (4, 4, 16, 16, 3)


def test_epochs_differ_and_repeat(motion_set):
    dataset = build_dataset(_cfg(motion_set), "training", seed=1)
    loader = build_loader(dataset, 9, train=True, num_workers=0, seed=1)
    clips = []
    for epoch in (0, 1, 0):
        set_epoch(loader, epoch)
        clips.append(torch.cat([b["clip"] for b in loader]))
    assert torch.equal(clips[0], clips[2]) and not torch.equal(clips[0], clips[1])


def test_validation_items_cover_every_video_n_times(motion_set):
    dataset = build_dataset(_cfg(motion_set, n_val_samples=3), "validation")
    loader = build_loader(dataset, 5, train=False, num_workers=0)
    videos = torch.cat([b["video"] for b in loader]).tolist()
    assert sorted(videos) == sorted(list(range(dataset.n_videos)) * 3)
    targets = {v: dataset.videos[v].target for v in range(dataset.n_videos)}
    assert set(targets.values()) == {0, 1, 2, 3}


def test_sampler_shards_without_overlap_for_evaluation_and_pads_for_training():
    shards = [list(ClipSampler(10, shuffle=False, rank=r, world_size=3)) for r in range(3)]
    assert sorted(i for shard in shards for i, _ in shard) == list(range(10))
    train = [ClipSampler(10, shuffle=True, seed=2, rank=r, world_size=3, pad=True) for r in range(3)]
    for s in train:
        s.set_epoch(4)
    lists = [list(s) for s in train]
    assert {len(x) for x in lists} == {4} and all(len(s) == 4 for s in train)
    assert set(i for x in lists for i, _ in x) == set(range(10))
    assert all(epoch == 4 for x in lists for _, epoch in x)


def test_a_sampler_over_several_rounds_gives_those_epochs_back_to_back():
    """rounds (benchmarks): one pass of the sampler is the orders of consecutive epochs, from the
    one set on, each clip with its own epoch's draws, so one loader iterator serves them all."""
    one = ClipSampler(10, shuffle=True, seed=3)
    epochs = []
    for epoch in (5, 6, 7):
        one.set_epoch(epoch)
        epochs += list(one)
    three = ClipSampler(10, shuffle=True, seed=3, rounds=3)
    three.set_epoch(5)
    assert list(three) == epochs and len(three) == 30
    padded = [ClipSampler(10, shuffle=True, seed=2, rank=r, world_size=3, pad=True, rounds=2) for r in range(3)]
    assert all(len(s) == len(list(s)) == 8 for s in padded)
    assert ClipSampler(10, shuffle=False).rounds == 1 and len(ClipSampler(10, shuffle=False)) == 10


def test_a_loader_over_several_rounds_is_one_iterator(motion_set):
    """build_loader(rounds=...): the batches of three epochs from one iterator, the same clips
    as three one-epoch passes (drop_last aside: a pass's batches may span two epochs)."""
    dataset = build_dataset(_cfg(motion_set), "training", seed=4)
    single = build_loader(dataset, 4, train=True, num_workers=0, seed=4)
    expected = []
    for epoch in (0, 1, 2):
        set_epoch(single, epoch)
        expected += [b["clip"] for b in single]
    spanning = build_loader(dataset, 4, train=True, num_workers=0, seed=4, rounds=3)
    assert len(spanning) == 3 * len(single) == len(expected)
    assert all(torch.equal(a, b["clip"]) for a, b in zip(expected, spanning))


def test_sliding_windows_for_per_video_recognition(motion_set):
    dataset = build_dataset(_cfg(motion_set), "validation", sampling="sliding", stride=4, train=False)
    assert len(dataset) == dataset.n_videos * 3  # 12 frames, windows at 1, 5, 9
    segments = [dataset[i]["segment"].tolist() for i in range(3)]
    assert segments == [[1, 5], [5, 9], [9, 13]]


def test_nocrop_keeps_the_whole_frame_at_the_short_side(motion_set):
    dataset = build_dataset(_cfg(motion_set), "validation", sampling="sliding", stride=12, train=False, eval_crop="nocrop")
    item = dataset[0]
    assert item["clip"].shape == (4, 16, 19, 3)  # 40x48 frames: short side 16, long int(16 * 48 / 40)


def _augmented_by_video(batches, transform):
    """video -> (flip, jitter factors, the model input DeviceTransform makes of the clip)."""
    out = {}
    for batch in batches:
        x = transform(batch["clip"], flip=batch["flip"], jitter=batch["jitter"])
        for k, video in enumerate(batch["video"].tolist()):
            out[video] = (bool(batch["flip"][k]), batch["jitter"][k], x[k])
    return out


def test_flip_and_jitter_depend_on_the_item_not_on_the_batch_or_process(motion_set):
    """One process with batches of 4 and two processes with batches of 2 (the same global batch)
    flip and jitter every clip alike: the draws travel with the item, DeviceTransform applies them."""
    from resnet3d.data import DeviceTransform

    cfg = _cfg(motion_set, hflip=True, colorjitter=True)
    dataset = build_dataset(cfg, "training", seed=7)
    transform = DeviceTransform.from_config(cfg, train=True)
    whole = build_loader(dataset, 4, train=True, num_workers=0, seed=7)
    shards = [build_loader(dataset, 2, train=True, num_workers=0, seed=7, rank=r, world_size=2) for r in (0, 1)]
    seen = []
    for epoch in (2, 3):
        for loader in (whole, *shards):
            set_epoch(loader, epoch)
        one = _augmented_by_video(list(whole), transform)
        two = _augmented_by_video([b for loader in shards for b in loader], transform)
        assert sorted(one) == sorted(two) == list(range(dataset.n_videos))
        for video, (flip, factors, x) in one.items():
            assert flip == two[video][0]
            assert torch.equal(factors, two[video][1]) and torch.equal(x, two[video][2])
        seen.append([one[v][0] for v in sorted(one)])
    flips = [f for epoch in seen for f in epoch]
    assert 0 < sum(flips) < len(flips)  # some clips flipped, some not
    assert seen[0] != seen[1]  # and epochs draw afresh
    assert all(one[v][1].shape == (4,) for v in one)


def test_evaluation_items_carry_no_augmentation(motion_set):
    dataset = build_dataset(_cfg(motion_set), "validation")
    assert "flip" not in dataset[0] and "jitter" not in dataset[0]


def test_more_workers_than_cores_is_one_line_of_ours(motion_set, caplog, monkeypatch):
    """torch warns at every loader and every epoch's start ('This DataLoader will create N worker
    processes'); we say it once, and leave other warnings alone."""
    import logging
    import warnings

    from resnet3d.data import loader as loader_module

    monkeypatch.setattr(loader_module, "usable_cores", lambda: 1)
    # what torch's own check reads: through torch._utils.cpu_count in torch 2.13, directly in torch 2.11
    # and before (which have no torch._utils.cpu_count); both use it wherever it exists
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(loader_module, "_warned_worker_counts", set())
    dataset = build_dataset(_cfg(motion_set), "training", seed=5)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        warnings.simplefilter("always")
        for _ in range(2):  # a training and a validation loader, two epochs each
            loader = build_loader(dataset, 4, train=True, num_workers=2, seed=5, persistent_workers=False)
            for epoch in range(2):
                set_epoch(loader, epoch)
                assert len(list(loader)) == 2
        warnings.warn("another warning", UserWarning)
    assert [str(w.message) for w in caught] == ["another warning"]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["2 loader worker processes on 1 usable cores (--n_threads / --workers): more workers than cores "
                     "queue for the same cores and rarely load faster; taken as given"]


@pytest.mark.parametrize("local_rank, processes, workers, said", [
    ("0", "1", 4, False),  # 4 workers on 4 cores: fine
    ("0", "3", 2, False),  # 4 workers asked, divided among 3 processes rounded up: 6, from rounding alone
    ("0", "3", 3, True),  # 3 processes x 3 workers on 4 cores: said by the machine's first process
    ("1", "3", 3, False),  # ... and by no other
])
def test_the_workers_of_a_machines_processes_are_counted_together(monkeypatch, caplog, local_rank, processes,
                                                                   workers, said):
    from resnet3d.data import loader as loader_module

    monkeypatch.setattr(loader_module, "usable_cores", lambda: 4)
    monkeypatch.setattr(loader_module, "_warned_worker_counts", set())
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", processes)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        loader_module.warn_many_workers(workers)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == (["3 processes with 3 loader workers each on 4 usable cores (--n_threads / --workers: the "
                      "machine's workers, shared among its processes): more workers than cores queue for the same "
                      "cores and rarely load faster; taken as given"] if said else [])


def test_persistent_workers_exit_normally_when_the_program_ends(motion_set, tmp_path):
    """Workers a loader still held at the end were killed by multiprocessing's exit handler, which
    left one /tmp/pymp-* folder per worker (the socket batches' file descriptors pass through)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        from resnet3d.data import DataConfig, build_dataset, build_loader, set_epoch
        cfg = DataConfig(video_path={str(motion_set.jpg_path)!r}, annotation_path={str(motion_set.annotation_path)!r},
                         sample_size=16, sample_duration=4)
        loader = build_loader(build_dataset(cfg, "training", seed=0), 4, train=True, num_workers=2, seed=0)
        for epoch in (0, 1):
            set_epoch(loader, epoch)
            assert len(list(loader)) == 2
        """)  # (the loader is alive until the interpreter exits)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("pymp-")]


def test_a_temporary_folder_too_long_for_the_workers_socket_is_refused(motion_set, tmp_path, monkeypatch):
    """torch's workers hand batches over through a socket under TMPDIR; past 107 bytes the worker's
    hand-over fails in a thread and the main process waits for ever. Refused in one line instead;
    a folder just short enough still loads."""
    import tempfile

    import pytest

    from resnet3d.data.loader import SOCKET_PATH_BEYOND_TMPDIR, SOCKET_PATH_LIMIT
    from resnet3d.errors import UserError

    dataset = build_dataset(_cfg(motion_set), "training", seed=5)
    room = SOCKET_PATH_LIMIT - SOCKET_PATH_BEYOND_TMPDIR - len(str(tmp_path)) - 1
    fits, too_long = tmp_path / ("f" * room), tmp_path / ("f" * (room + 1))
    for folder in (fits, too_long):
        folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(too_long))
    with pytest.raises(UserError, match=r"too long for the loader workers.*set TMPDIR to a shorter folder"):
        build_loader(dataset, 4, train=True, num_workers=1, seed=5)
    build_loader(dataset, 4, train=True, num_workers=0, seed=5)  # no workers, no socket
    monkeypatch.setattr(tempfile, "tempdir", str(fits))
    assert len(list(build_loader(dataset, 4, train=True, num_workers=1, seed=5))) == 2
