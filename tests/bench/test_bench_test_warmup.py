"""``resnet3d bench test`` runs each side once untimed before timing it.

A first pass pays one-time costs: on a GPU cuDNN's autotuning of every new batch shape
(cudnn.benchmark), CUDA's and nvJPEG's start-up, the first pinned buffers. Unwarmed, the
baseline's timing held its autotuning and ours its own, and with ``--compare-fold`` all of ours
fell on the first of the two settings (on the CPU, importing torch.fx alone made folded/unfolded
read 0.29 on tiny data).
"""
from __future__ import annotations


import pytest

from bench_helpers import bench_test_lines

from resnet3d.bench import test as bench_test


def _run(tmp_path, capsys, monkeypatch, *extra):
    calls = []
    real_baseline, real_ours = bench_test._baseline, bench_test._ours

    def baseline(model, videos, data, device, workers):
        calls.append(("baseline", len(videos)))
        return real_baseline(model, videos, data, device, workers)

    def ours(args, model, videos, data, device, names, assemble_on, fold_bn, baseline_top1, baseline_rate, *rest):
        calls.append(("ours", fold_bn, "timed" if baseline_rate is not None else "untimed"))
        return real_ours(args, model, videos, data, device, names, assemble_on, fold_bn, baseline_top1, baseline_rate,
                         *rest)

    monkeypatch.setattr(bench_test, "_baseline", baseline)
    monkeypatch.setattr(bench_test, "_ours", ours)
    return calls, bench_test_lines(tmp_path / "data", capsys, "--compare-fold", *extra)


@pytest.mark.slow
def test_each_side_is_warmed_up_before_it_is_timed(tmp_path, capsys, monkeypatch):
    calls, lines = _run(tmp_path, capsys, monkeypatch)
    videos = lines[0]["videos"]
    assert calls == [("baseline", 1), ("baseline", videos), ("ours", True, "untimed"),
                     ("ours", True, "timed"), ("ours", False, "timed")]
    # the warm-up passes print nothing: one line per timed side, as before
    assert [(line["baseline"], line.get("fold_bn")) for line in lines] == [(True, None), (False, True), (False, False)]
    assert all(line["warm_up"] is True for line in lines) and "folded_vs_unfolded" in lines[2]
    # our passes say where their fixed costs went (set-up, the workers' start-up)
    assert all(line["setup_s"] > 0 and line["first_chunk_s"] >= 0 for line in lines[1:])
    assert all(0 <= line["data_wait_share"] <= 1 for line in lines[1:])
    # both sides also without their workers' start-up (and ours without its set-up): the figure a
    # data set of thousands of videos approaches, and the ratio so
    assert all(line["steady_videos_per_s"] >= line["videos_per_s"] for line in lines)
    assert all(line["steady_speedup"] > 0 for line in lines[1:])
    # CPU seconds of each side, its workers included (the steadier figure on a shared machine)
    assert all(line["cpu_seconds"] > 0 and line["videos_per_cpu_s"] > 0 for line in lines)
    assert all(line["model_threads"] >= 1 and line["speedup_per_cpu"] > 0 for line in lines[1:])

    calls, lines = _run(tmp_path, capsys, monkeypatch, "--no-warm-up")
    assert calls == [("baseline", videos), ("ours", True, "timed"), ("ours", False, "timed")]
    assert all(line["warm_up"] is False for line in lines)


def test_bench_test_video_path_without_annotation_is_a_one_line_error(capsys):
    """It was a SystemExit: status 1 and a line without the 'resnet3d bench: error:' form."""
    from resnet3d import cli

    assert cli.main(["bench", "test", "--video_path", ".", "--device", "cpu", "--n_threads", "0"]) == 2
    assert "resnet3d bench: error: --video_path needs --annotation_path" in capsys.readouterr().err


def test_the_steady_rate_leaves_out_nothing_it_cannot_divide_by():
    assert bench_test._steady_rate(30, 1.5) == 20.0
    assert bench_test._steady_rate(30, 0.0) is None
