"""decode_device "mixed": the share of batches the GPU decodes (``data.decode_share``), the
batches of either kind it makes the dataset hand over, and its trip through real loader workers.

The controller is driven here by given waits (no timing): it must move the share towards the side
that keeps the loop waiting, hold still while the batches decided before a change are still in
the loader, and settle by halving its step when the direction turns."""
from __future__ import annotations

import pytest
import torch

from resnet3d.data import DataConfig, build_dataset, build_loader
from resnet3d.data.decode_share import INITIAL_STEP, MIN_STEP, MIN_WINDOW, DecodeShare
from resnet3d.data.loader import decode_share_of
from resnet3d.synthetic import make_action_dataset


@pytest.mark.parametrize("share, taken", [(0.0, 0), (0.25, 4), (0.5, 8), (1.0, 16)])
def test_every_nth_batch_goes_to_the_gpu(share, taken):
    picks = [DecodeShare(initial=share).take() for _ in range(1)]  # a fresh credit takes none below 1
    assert picks == [share == 1.0]
    decider = DecodeShare(initial=share)
    assert sum(decider.take() for _ in range(16)) == taken


def _feed(share: DecodeShare, batches: int, loader_wait: float, decode_wait: float, seconds: float = 0.1) -> None:
    for _ in range(batches):
        share.observe(loader_wait, decode_wait, seconds)


def test_waiting_on_the_loader_raises_the_share_and_on_decoding_lowers_it():
    share = DecodeShare(initial=0.25)
    _feed(share, MIN_WINDOW - 1, 0.05, 0.0)
    assert share.share == 0.25  # not a full window yet
    _feed(share, 1, 0.05, 0.0)
    assert share.share == pytest.approx(0.25 + INITIAL_STEP)
    _feed(share, MIN_WINDOW, 0.0, 0.05)  # now the GPU decoding keeps the loop waiting
    assert share.share == pytest.approx(0.25 + INITIAL_STEP - INITIAL_STEP / 2)  # turned: half a step
    assert share.history == [pytest.approx(0.35), pytest.approx(0.30)]


def test_with_no_wait_the_workers_take_more_and_small_waits_are_noise():
    """The step bounds the loop: the share falls (the workers have time to spare), and loader
    waits under the threshold do not count as the workers falling behind."""
    share = DecodeShare(initial=0.4)
    _feed(share, MIN_WINDOW, 0.0, 0.0)
    _feed(share, MIN_WINDOW, 0.0015, 0.0)  # 1.5% of the loop: below the threshold
    assert share.history == [pytest.approx(0.3), pytest.approx(0.2)]
    _feed(share, MIN_WINDOW, 0.01, 0.0)  # 10%: they fell behind, the share turns back up
    assert share.share == pytest.approx(0.25)


def test_slower_than_at_the_best_share_goes_back_there():
    """The waits keep asking for more GPU decoding, but each step up costs a little speed
    (decoding on the GPU taking time from the step, say): once the loop is more than 5% slower
    than at the best share, the share goes back there, and the next try is half as far."""
    share = DecodeShare(initial=0.3)
    _feed(share, MIN_WINDOW, 0.05, 0.0, seconds=0.100)  # at 0.3; the loader keeps the loop waiting: up
    _feed(share, MIN_WINDOW, 0.05, 0.0, seconds=0.103)  # at 0.4: 3% slower, within noise: up again
    assert share.share == pytest.approx(0.5)
    _feed(share, MIN_WINDOW, 0.05, 0.0, seconds=0.106)  # at 0.5: 6% slower than at 0.3: back
    assert share.share == pytest.approx(0.3)
    _feed(share, MIN_WINDOW, 0.05, 0.0, seconds=0.110)  # at 0.3 again, slower now (a busier machine):
    assert share.share == pytest.approx(0.35)           # its rate is renewed, and the next try is half as far
    assert share.history == [pytest.approx(v) for v in (0.4, 0.5, 0.3, 0.35)]


def test_after_a_change_the_batches_already_in_the_loader_are_not_measured():
    share = DecodeShare(initial=0.5, lag=20)
    _feed(share, 20, 0.05, 0.0)  # one window of lag batches: a change
    assert share.share == pytest.approx(0.6)
    _feed(share, 20, 0.0, 0.08)  # decided before the change: ignored, though they say "lower"
    assert share.share == pytest.approx(0.6)
    _feed(share, 20, 0.0, 0.08)
    assert share.share == pytest.approx(0.55)


def test_the_share_stays_within_0_and_1_and_the_step_within_its_floor():
    share = DecodeShare(initial=0.95)
    _feed(share, 10 * MIN_WINDOW, 0.05, 0.0)
    assert share.share == 1.0
    for _ in range(12):  # back and forth: the step halves down to its floor
        _feed(share, MIN_WINDOW, 0.0, 0.05)
        _feed(share, MIN_WINDOW, 0.05, 0.0)
    moves = [abs(a - b) for a, b in zip(share.history, share.history[1:])]
    assert min(moves) == pytest.approx(MIN_STEP)
    _feed(share, 100 * MIN_WINDOW, 0.0, 0.05)
    assert share.share == 0.0


def test_a_share_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        DecodeShare(initial=1.5)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        DecodeShare().share = -0.1


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    return make_action_dataset(str(root), n_classes=2, videos_per_class=6, n_frames=8, size=(32, 40), val_share=0.0)


def _config(info, decode_device: str, workers: int = 0) -> DataConfig:
    return DataConfig(dataset=info.dataset, video_path=info.jpg_path, annotation_path=info.annotation_path,
                      sample_size=16, sample_duration=4, num_workers=workers, decode_device=decode_device)


def test_mixed_batches_are_whole_batches_of_either_kind_with_the_same_draws(frames):
    """Batch by batch, a mixed loader hands over what the cpu or the cuda loader would: the same
    clips (targets, segments, flips, crop draws), as pixels or as JPEG bytes."""
    kinds = {}
    for mode in ("cpu", "cuda", "mixed"):
        dataset = build_dataset(_config(frames, mode), "training", seed=3)
        if mode == "mixed":
            dataset.decode_share.share = 0.5  # every other batch
        kinds[mode] = list(build_loader(dataset, 4, train=True, num_workers=0, seed=3))
    assert [("jpeg" in b, "clip" in b) for b in kinds["mixed"]] == [(False, True), (True, False), (False, True)]
    for mixed, cpu, cuda in zip(kinds["mixed"], kinds["cpu"], kinds["cuda"]):
        same = cuda if "jpeg" in mixed else cpu
        for key in ("target", "video", "segment", "flip", "jitter"):
            assert torch.equal(mixed[key], same[key]), key
        if "jpeg" in mixed:
            assert torch.equal(mixed["jpeg_boxes"], cuda["jpeg_boxes"]) and torch.equal(mixed["jpeg"], cuda["jpeg"])
        else:
            assert torch.equal(mixed["clip"], cpu["clip"])


def test_the_workers_read_the_share_the_main_process_sets(frames):
    """Real worker processes: the share lives in shared memory, so what the main process decides
    reaches batches the workers start afterwards."""
    loader = build_loader(build_dataset(_config(frames, "mixed", workers=2), "training"), 2, train=True,
                          num_workers=2, persistent_workers=False)
    share = decode_share_of(loader)
    assert share is not None and share.lag == 2 * loader.prefetch_factor
    share.share = 1.0
    assert all("jpeg" in batch for batch in loader)
    share.share = 0.0
    assert all("clip" in batch and "jpeg" not in batch for batch in loader)
    assert decode_share_of(build_loader(build_dataset(_config(frames, "cpu"), "training"), 2, train=True,
                                        num_workers=0)) is None
