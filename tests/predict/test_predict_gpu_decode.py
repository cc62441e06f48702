"""Recognition with ``decode_device`` "cuda" (the *encoded* mode), run here with the device steps
on the CPU: the workers hand over each chunk's JPEG bytes, the main process decodes them
(simplejpeg standing in for nvJPEG: torchvision is absent here), crops, resizes and lays out the
views, and the results match the normal path's.

Tolerances, measured on these generated frames (48 x 64, views 8 x 32 x 32, so the centre crop is
resized 48 -> 32), on the softmax probabilities of ``decisive_model`` (its classifier scaled up
8x, so probabilities lie far from uniform and small input changes show):
- views: the encoded mode decodes at full size with libjpeg-turbo's exact IDCT. Against the
  normal path in its exact mode (``decode_tolerance`` 1, ``fast_decode`` off) only the two
  resizes' rounding differs (uint8 on the CPU path, float32 here): at most 1 grey level
  (docs/data.md, "Pixels"). A mistake in the layout (window order, crop offsets, segments) would
  differ by tens of levels.
- scores against the exact mode: measured at most 0.0022 (per window, nocrop; 0.0017 averaged):
  EXACT_TOLERANCE = 0.005.
- scores against the default (fast) mode, what users compare with: its fast IDCT differs from
  the exact full-size decode by up to ~5 grey levels (mean < 1); measured at most 0.0098 (seed
  windows; 0.0056-0.0088 for the others): FAST_TOLERANCE = 0.02.
- top-1: the top two probabilities of every video and window lie at least 0.12 apart here, far
  beyond either tolerance, so every top-1 label must agree.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from predict_helpers import DURATION, SIZE, recognition_config

from resnet3d.cli import main
from resnet3d.errors import UserError

EXACT_TOLERANCE = 0.005
FAST_TOLERANCE = 0.02
EXACT = {"decode_tolerance": 1.0, "fast_decode": False}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """4 classes x 3 videos of 20 frames at 48 x 64 (two validation videos per class): landscape
    frames larger than the clip, so centre crops are resized and three crops sit at distinct offsets."""
    from resnet3d.synthetic import make_action_dataset

    root = tmp_path_factory.mktemp("gpu-decode-motion")
    return make_action_dataset(str(root), n_classes=4, videos_per_class=3, n_frames=20, size=(48, 64),
                               val_share=0.67, seed=9)


@pytest.fixture(scope="module")
def model():
    """ResNet-10 (widen 0.5), fixed random weights, BatchNorm statistics of plausible size, the
    classifier scaled up so that most videos get a clear top-1 (as tests/gpu's decisive_model)."""
    from resnet3d.models import create_model

    torch.manual_seed(3)
    net = create_model("resnet", 10, widen_factor=0.5, n_classes=4)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, torch.nn.BatchNorm3d):
                layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
                layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
        net.fc.weight.mul_(8.0)
    return net.eval()


def _recognise(info, model, out, *, encoded, workers=0, n_clips=0, n_crops=1, resume=None, **settings):
    """``encoded``: False (the workers decode), True (decode_device "cuda") or "mixed"."""
    from resnet3d.engine.predict import run_recognition

    decode_device = "mixed" if encoded == "mixed" else "cuda" if encoded else "cpu"
    config = recognition_config(info, out.parent, workers=workers, top_k=4, decode_device=decode_device, **settings)
    summary = run_recognition(config, model=model, device=CPU, output=out, n_clips=n_clips, n_crops=n_crops,
                              overwrite=resume is None, resume=resume, show_progress=False, announce=False,
                              assemble_device=CPU if encoded else None)
    return summary, json.loads(out.read_text())


def _scores(entries):
    """label -> score of a video's entry (averaged) or of each of its windows (not averaged)."""
    if entries and "segment" in entries[0]:
        return [(tuple(w["segment"]), {e["label"]: e["score"] for e in w["result"]}) for w in entries]
    return [(None, {e["label"]: e["score"] for e in entries})]


def _compare(got, want, tolerance):
    """The largest score difference, after checking the videos, windows, labels and top-1s."""
    assert set(got["results"]) == set(want["results"]) and not got.get("errors") and not want.get("errors")
    difference = 0.0
    for video, entries in want["results"].items():
        mine = _scores(got["results"][video])
        for (segment, scores), (other_segment, other) in zip(_scores(entries), mine, strict=True):
            assert segment == other_segment and sorted(other) == sorted(scores)
            difference = max(difference, max(abs(other[label] - scores[label]) for label in scores))
            ranked = sorted(scores.values(), reverse=True)
            assert ranked[0] - ranked[1] > 2 * tolerance  # a clear top-1 (see the module docstring) ...
            assert max(other, key=other.get) == max(scores, key=scores.get), video  # ... that both sides give
    return difference


@pytest.mark.parametrize("flavour, stride, n_clips, crop, n_crops, average", [
    ("seed", DURATION, 0, "center", 1, True),      # the seed's --test_video windows
    ("successor", 4, 0, "nocrop", 1, False),       # sliding windows, loop-padded ends, per window
    ("successor", 4, 0, "center", 3, True),        # sliding windows x three crops
    ("successor", DURATION, 3, "center", 3, True),  # evenly spread windows x three crops
])
def test_encoded_recognition_matches_the_normal_path(wide, model, tmp_path, flavour, stride, n_clips, crop, n_crops,
                                                     average):
    views = dict(n_clips=n_clips, n_crops=n_crops, flavour=flavour, stride=stride, crop=crop, average=average)
    fast, want_fast = _recognise(wide, model, tmp_path / "fast.json", encoded=False, **views)
    _, want_exact = _recognise(wide, model, tmp_path / "exact.json", encoded=False, **views, **EXACT)
    encoded, got = _recognise(wide, model, tmp_path / "encoded.json", encoded=True, workers=1, **views)
    exact_difference = _compare(got, want_exact, EXACT_TOLERANCE)
    fast_difference = _compare(got, want_fast, FAST_TOLERANCE)
    print(f"largest score difference: {exact_difference:.5f} (exact mode), {fast_difference:.5f} (fast mode)")
    assert exact_difference <= EXACT_TOLERANCE and fast_difference <= FAST_TOLERANCE
    assert (encoded["videos"], encoded["model_calls"], encoded["bad_frames"]) == (8, fast["model_calls"], 0)
    assert encoded["decode_device"] == "cuda" and fast["decode_device"] == "cpu"


def test_mixed_recognition_decodes_some_chunks_on_the_device_and_matches(wide, model, tmp_path, monkeypatch):
    """decode_device "mixed": two workers hand over some chunks as JPEG bytes (decoded on the
    device, the CPU here) and decode the others; the scores are the normal path's within the
    fast mode's tolerance (each chunk is one mode's or the other's), and the line reports the share."""
    from resnet3d.engine import predict

    assembled = []
    real_assemble = predict.assemble_views
    monkeypatch.setattr(predict, "assemble_views", lambda *a, **k: assembled.append(1) or real_assemble(*a, **k))
    views = dict(flavour="successor", stride=4, n_clips=0, n_crops=1, crop="center", average=True)
    fast, want = _recognise(wide, model, tmp_path / "fast.json", encoded=False, **views)
    mixed, got = _recognise(wide, model, tmp_path / "mixed.json", encoded="mixed", workers=2, **views)
    assert _compare(got, want, FAST_TOLERANCE) <= FAST_TOLERANCE
    assert mixed["videos"] == 8 and mixed["decode_device"] == "mixed" and 0 <= mixed["gpu_decode_share"] <= 1
    assert 0 < len(assembled) < 8  # 8 one-chunk videos, every fourth chunk of each worker on the device


@pytest.mark.parametrize("scheme, crop", [("seed", "center"), ("sliding", "nocrop"), ("sliding", "three"),
                                          ("even", "three")])
def test_encoded_chunks_assemble_into_the_normal_views(wide, scheme, crop):
    """Chunk by chunk: the same windows, segments and views (exact mode on both sides: at most 1
    grey level apart, the resizes' rounding), with chunks split mid-video (chunk_rows 3: one window
    of three crops, or three windows of one)."""
    from resnet3d.data import DataConfig
    from resnet3d.data.dataset import resolve_videos
    from resnet3d.engine.windows import ViewPlan, WindowDataset, assemble_views, group_units

    cfg = DataConfig(dataset=wide.dataset, video_path=wide.jpg_path, annotation_path=wide.annotation_path,
                     sample_size=SIZE, sample_duration=DURATION, num_workers=0, **EXACT)
    videos, _, _ = resolve_videos(cfg, "validation")
    units = group_units(videos[:2], {v.key: v.key for v in videos})
    plan = ViewPlan(sample_duration=DURATION, sample_size=SIZE, scheme=scheme, stride=3, n_clips=5, crop=crop,
                    chunk_rows=1 if scheme == "seed" else 3)
    normal = list(WindowDataset(videos, units, cfg, plan))
    encoded = list(WindowDataset(videos, units, cfg.with_changes(decode_device="cuda"), plan))
    assert len(normal) == len(encoded) > len(units)  # several chunks per video
    for want, got in zip(normal, encoded, strict=True):
        assert "rows" not in got and "jpeg" in got
        for key in ("unit", "expected", "bad_frames"):
            assert int(got[key]) == int(want[key])
        assert torch.equal(got["window"], want["window"]) and torch.equal(got["segment"], want["segment"])
        rows, n_bad = assemble_views(got, plan, CPU)
        assert n_bad == 0 and rows.shape == want["rows"].shape and rows.dtype == torch.uint8
        assert int((rows.int() - want["rows"].int()).abs().max()) <= 1


def _damaged_copy(info, tmp_path):
    """The data set's JPEG folders copied, so the session's fixture stays whole."""
    root = tmp_path / "jpg"
    shutil.copytree(info.jpg_path, root)
    return dataclasses.replace(info, jpg_path=str(root))


def _folder(info, video):
    return Path(info.jpg_path) / video["rel_path"]


def _truncate(frame):
    frame.write_bytes(frame.read_bytes()[:-60])  # the header reads; the data ends early


def test_missing_and_undecodable_frames_are_counted(wide, model, tmp_path):
    info = _damaged_copy(wide, tmp_path)
    first = next(v for v in info.videos if v["subset"] == "validation")
    folder = _folder(info, first)
    (folder / "image_00005.jpg").unlink()  # missing: the worker finds it
    _truncate(folder / "image_00011.jpg")  # only the decoder finds it
    normal, want = _recognise(info, model, tmp_path / "cpu.json", encoded=False)
    encoded, got = _recognise(info, model, tmp_path / "encoded.json", encoded=True)
    assert normal["bad_frames"] == encoded["bad_frames"] == 2  # each frame once: one chunk holds every window
    assert encoded["errors"] == 0 and encoded["videos"] == 8
    assert _compare(got, want, FAST_TOLERANCE) <= FAST_TOLERANCE  # the stand-ins are the same frames


def test_a_video_whose_frames_do_not_decode_is_an_error_entry(wide, model, tmp_path, caplog):
    info = _damaged_copy(wide, tmp_path)
    val = [v for v in info.videos if v["subset"] == "validation"]
    for frame in _folder(info, val[0]).glob("*.jpg"):
        _truncate(frame)
    # the second video fails in its last chunk only: even windows x 3 crops make two chunks
    for number in range(10, 21):
        _truncate(_folder(info, val[1]) / f"image_{number:05d}.jpg")
    with caplog.at_level("WARNING"):
        encoded, got = _recognise(info, model, tmp_path / "encoded.json", encoded=True, workers=1, n_clips=30,
                                  n_crops=3)
    assert encoded["errors"] == 2 and encoded["videos"] == 6
    for video in val[:2]:
        assert video["key"] not in got["results"]
        assert "no readable frame" in got["errors"][video["key"]] and video["key"] in got["errors"][video["key"]]
    assert "frames 10-20" in got["errors"][val[1]["key"]]  # its first chunk decoded and was scored
    # the normal path: the first video is unreadable there too
    normal, want = _recognise(info, model, tmp_path / "cpu.json", encoded=False)
    assert val[0]["key"] in want["errors"]


def test_encoded_chunks_decode_in_the_decode_thread_ahead(monkeypatch):
    """The main thread scores chunk k while ``feed.decode_thread`` decodes the next ones: chunks
    come out in order, each of JPEG bytes with the finished future of its views, the others
    (errors) with none."""
    import threading

    from resnet3d.engine import predict
    from resnet3d.engine.feed import AHEAD

    taken = []

    def chunks():
        for n, chunk in enumerate([{"jpeg": {}}, {"jpeg": {}}, {"jpeg": {}, "error": "unreadable"}, {"jpeg": {}}]):
            taken.append(n)
            yield {**chunk, "unit": n}

    monkeypatch.setattr(predict, "assemble_views",
                        lambda chunk, plan, device: (chunk["unit"], threading.current_thread().name))
    seen = []
    for chunk, decoding, waits in predict._decoded_ahead(chunks(), plan=None, device=torch.device("cpu")):
        assert decoding is None or decoding.done()
        seen.append((chunk["unit"], None if decoding is None else decoding.result()[0]))
        assert len(taken) == min(chunk["unit"] + AHEAD, 4)  # the next chunks are already under way
        assert waits.loader >= 0 and waits.decode >= 0
        if decoding is not None:
            assert decoding.result()[1].startswith("resnet3d-decode")
    assert seen == [(0, 0), (1, 1), (2, None), (3, 3)]
    plain = [(chunk, decoding) for chunk, decoding, _ in predict._decoded_ahead(iter([{"unit": 0}]), None, None)]
    assert plain == [({"unit": 0}, None)]  # the workers decoded: nothing to do


def test_resume_refuses_results_of_the_other_decode_device(wide, model, tmp_path):
    _recognise(wide, model, tmp_path / "val.json", encoded=False)
    with pytest.raises(UserError, match="decode_device"):
        _recognise(wide, model, tmp_path / "val.json", encoded=True, resume=True)


def test_row_batcher_joins_device_rows_on_their_device():
    """Rows assembled on a device are joined there (the meta device stands in for a GPU: no host
    copy, no pinned buffer), host rows in a host batch; the two never share a batch."""
    from resnet3d.engine.scoring import RowBatcher

    batcher = RowBatcher(4)
    for unit, device in ((0, "meta"), (1, "cpu"), (2, "meta")):
        rows = torch.zeros((3, DURATION, SIZE, SIZE, 3), dtype=torch.uint8, device=device)
        batcher.add(unit, rows, torch.arange(3), torch.zeros(3, 2, dtype=torch.int64))
    batches = list(batcher.batches(flush=True))
    devices = [(rows.device.type, len(rows), meta["unit"].tolist()) for rows, meta in batches]
    assert devices == [("meta", 4, [0, 0, 0, 2]), ("meta", 2, [2, 2]), ("cpu", 3, [1, 1, 1])]


def _refusal(capsys, argv):
    status = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return status, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal of a machine without a CUDA GPU")
def test_decode_device_cuda_is_refused_without_a_gpu(motion, our_checkpoint, tmp_path, capsys):
    data = ["--video_path", motion.jpg_path, "--annotation_path", motion.annotation_path]
    status, err = _refusal(capsys, ["main", *data, "--result_path", str(tmp_path), "--no_train", "--no_val",
                                    "--test_video", "--test_subset", "val", "--resume_path", str(our_checkpoint),
                                    "--n_threads", "0", "--decode-device", "cuda"])
    # one line (after main's usual note that it runs on the CPU), before any file is written
    assert status == 2 and err[-1].startswith("resnet3d main: error: --decode-device cuda") and len(err) <= 2, err
    assert "use --decode-device cpu" in err[-1] and sum("error" in line for line in err) == 1
    assert not (tmp_path / "val_video.json").exists()
    status, err = _refusal(capsys, ["test", "--weights", str(our_checkpoint), *data, "--output",
                                    str(tmp_path / "out.json"), "--n-threads", "0", "--decode-device", "cuda"])
    assert status == 2 and len(err) == 1 and err[0].startswith("resnet3d test: error: --decode-device cuda")
    assert not (tmp_path / "out.json").exists()
    status, err = _refusal(capsys, ["bench", "test", "--video_path", motion.jpg_path, "--annotation_path",
                                    motion.annotation_path, "--decode-device", "cuda", "--device", "cpu"])
    assert status == 2 and len(err) == 1 and "--decode-device cuda" in err[0]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["cuda", "mixed"])
def test_bench_test_measures_the_encoded_mode(tmp_path, capsys, mode):
    status = main(["bench", "test", "--synthetic-dir", str(tmp_path / "data"), "--videos", "4", "--frames", "12",
                   "--height", "48", "--width", "64", "--model_depth", "10", "--resnet_widen_factor", "0.5",
                   "--n_classes", "8", "--sample_size", "32", "--sample_duration", "8", "--n_threads", "1",
                   "--batch_size", "8", "--device", "cpu", "--decode-device", mode, "--assemble-device", "cpu"])
    assert status == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["baseline"] for line in lines] == [True, False]
    ours = lines[1]
    assert ours["decode_device"] == mode and ours["assemble_device"] == "cpu" and "decoded on cpu" in ours["scheme"]
    assert ours["errors"] == 0 and ours["bad_frames"] == 0 and ours["top1_agreement"] >= 0.5
    assert ("gpu_decode_share" in ours) == (mode == "mixed")
