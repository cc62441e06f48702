"""`resnet3d bench train --sweep` and `--epochs` on the CPU at toy sizes: the JSON lines, a failing
configuration that does not end the sweep, the time budget, host memory per epoch."""
import json
import os
import subprocess
import sys

import pytest
import torch

from resnet3d import cli
from resnet3d.bench import train_end_to_end, train_parts, train_step_sweep
from resnet3d.engine import compilation, loop
from resnet3d.errors import UserError

TINY = ["--model", "resnet", "--model_depth", "10", "--resnet_widen_factor", "0.25", "--n_classes", "8",
        "--sample_size", "16", "--sample_duration", "4", "--steps", "2", "--warmup", "1", "--frame-size", "24x32",
        "--device", "cpu"]


def bench(capsys, *argv):
    assert cli.main(["bench", "train", *TINY, *argv]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_sweep_plan_and_its_flags():
    plan = train_step_sweep.sweep_plan([64, 128], ["default", "max-autotune"])
    names = [(setting.name, n) for setting, n in plan]
    assert names[:5] == [("baseline fp32 NCDHW", 64), ("fp32 NCDHW", 64), ("fp32 channels_last_3d", 64),
                         ("bf16 NCDHW", 64), ("bf16 channels_last_3d", 64)]
    assert names[5] == ("baseline fp32 NCDHW", 128)
    assert names[10:] == [("bf16 channels_last_3d compile default", 64), ("bf16 channels_last_3d compile default", 128),
                          ("bf16 channels_last_3d compile max-autotune", 64),
                          ("bf16 channels_last_3d compile max-autotune", 128)]
    assert train_step_sweep.parse_compile_modes("default, none,reduce-overhead,default") == ["default", "reduce-overhead"]
    assert train_step_sweep.parse_compile_modes("") == []
    with pytest.raises(UserError, match="--compile-modes: mode 'fastest': choose one of"):
        train_step_sweep.parse_compile_modes("default,fastest")
    with pytest.raises(UserError, match="--precisions 'fp8'"):
        train_step_sweep.parse_precisions("fp8")
    with pytest.raises(UserError, match="--batch-sizes '64,big'"):
        train_step_sweep._int_list("64,big", "--batch-sizes")


def test_deadline_counts_from_its_start():
    now = [100.0]
    deadline = train_parts.Deadline(30, clock=lambda: now[0])
    now[0] = 129.0
    assert not deadline.spent()
    now[0] = 131.0
    assert deadline.spent() and deadline.reason() == "--time-budget 30 s spent (31 s)"
    assert not train_parts.Deadline(0, clock=lambda: now[0]).spent()


def failing_backend(gm, example_inputs):
    raise RuntimeError("no working C++ compiler")


@pytest.mark.slow
def test_sweep_lines_survive_a_failing_configuration(capsys, monkeypatch):
    """Two injected failures: an out-of-memory in one eager setting, and a compile failure (a real
    dynamo error, from a backend that raises) in every compiled one."""
    real_compile, real_step = torch.compile, loop.train_step

    def step_out_of_memory_at_3(parts, clips, targets, augment=None):
        if parts.channels_last and clips.shape[0] == 3 and not hasattr(parts.model, "_orig_mod"):  # eager only
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real_step(parts, clips, targets, augment)

    monkeypatch.setattr(loop, "train_step", step_out_of_memory_at_3)
    monkeypatch.setattr(compilation.torch, "compile",
                        lambda model, mode=None, dynamic=None: real_compile(model, backend=failing_backend, dynamic=dynamic))
    records = bench(capsys, "--sweep", "--only", "step", "--batch-sizes", "2,3", "--precisions", "fp32",
                    "--compile-modes", "default")
    assert [(r["setting"], r["batch_size"]) for r in records] == [
        ("baseline fp32 NCDHW", 2), ("fp32 NCDHW", 2), ("fp32 channels_last_3d", 2),
        ("baseline fp32 NCDHW", 3), ("fp32 NCDHW", 3), ("fp32 channels_last_3d", 3),
        ("fp32 channels_last_3d compile default", 2), ("fp32 channels_last_3d compile default", 3)]
    for record in records:
        assert record["what"] == "train_step_sweep" and record["model"] == "resnet-10" and "machine" in record
    measured = [r for r in records if "error" not in r]
    assert len(measured) == 5
    for record in measured:
        assert record["clips_per_s"] > 0 and record["step_ms"] > 0 and record["sgd"] == "for-loop"
        assert ("speedup" in record) != record["baseline"]
    out_of_memory = records[5]
    assert out_of_memory["error"].startswith("OutOfMemoryError: CUDA out of memory") and "clips_per_s" not in out_of_memory
    for compiled in records[6:]:
        assert compiled["compile_mode"] == "default"
        assert compiled["error"].startswith("UserError: torch.compile (mode default) failed: BackendCompilerFailed")
        assert "no working C++ compiler" in compiled["error"] and "drop it from --compile-modes" in compiled["error"]


def test_half_precision_is_not_run_on_the_cpu(capsys):
    records = bench(capsys, "--sweep", "--only", "step", "--batch-sizes", "2", "--compile-modes", "", "--no-baseline",
                    "--steps", "1", "--warmup", "0")
    assert [r["setting"] for r in records] == ["fp32 NCDHW", "fp32 channels_last_3d", "bf16 NCDHW",
                                               "bf16 channels_last_3d"]
    assert records[1]["clips_per_s"] > 0 and "speedup" not in records[1]  # (no baseline measured)
    assert records[2]["skipped"].startswith("bf16/fp16 are not run on the CPU") and "clips_per_s" not in records[2]


def test_time_budget_skips_what_is_left(capsys):
    records = bench(capsys, "--sweep", "--batch-sizes", "2", "--precisions", "fp32", "--compile-modes", "default",
                    "--time-budget", "1e-9")
    assert records[0]["skipped"] == ["baseline fp32 NCDHW @ batch 2", "fp32 NCDHW @ batch 2",
                                     "fp32 channels_last_3d @ batch 2",
                                     "fp32 channels_last_3d compile default @ batch 2"]
    assert records[0]["reason"].startswith("--time-budget 1e-09 s spent")
    assert records[1] == {**records[1], "what": "train_end_to_end", "skipped": True}
    assert len(records) == 2


@pytest.mark.slow
def test_epochs_report_host_memory_of_the_main_process_and_its_workers(tmp_path):
    """Real worker processes (two), three whole epochs: one line per epoch, then the summary.
    8 generated videos listed twice (--video-copies 2): epochs of 16 clips."""
    done = subprocess.run(
        [sys.executable, "-m", "resnet3d", "bench", "train", *TINY, "--only", "end-to-end", "--epochs", "3",
         "--batch_size", "4", "--n_threads", "2", "--generate-videos", "8", "--video-copies", "2", "--no-baseline"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    epochs, summary = records[:-1], records[-1]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    for record in epochs:
        assert record["what"] == "train_epoch" and record["steps"] == 4 and record["clips"] == 16
        assert record["baseline"] is False  # every line says which side it measured
        assert record["clips_per_s"] > 0 and 0 <= record["data_wait_share"] <= 1
        assert record["rss_main_mib"] > 0 and record["rss_workers_mib"] > 0 and record["pss_total_mib"] > 0
        assert record["n_worker_processes"] >= 2
        assert "peak_memory_gib" not in record  # (CUDA only)
    assert summary["what"] == "train_end_to_end" and summary["epochs"] == 3 and summary["n_threads"] == 2
    assert summary["memory_growth_from_epoch"] == 2
    assert summary["rss_main_growth_mib"] == round(epochs[2]["rss_main_mib"] - epochs[1]["rss_main_mib"], 1)
    assert summary["rss_workers_growth_mib"] == round(epochs[2]["rss_workers_mib"] - epochs[1]["rss_workers_mib"], 1)
    assert "pss_total_growth_mib" in summary and summary["clips_per_s"] > 0
    assert summary["sgd"] == "for-loop" and summary["compile_mode"] == "none" and summary["pin_memory"] is False


@pytest.mark.slow
def test_epochs_beside_the_baseline_print_no_speedup(tmp_path):
    """Ours over whole epochs against the baseline's one timed stretch printed a ratio of two
    different measurements."""
    done = subprocess.run(
        [sys.executable, "-m", "resnet3d", "bench", "train", *TINY, "--only", "end-to-end", "--epochs", "1",
         "--steps", "2", "--batch_size", "4", "--n_threads", "0", "--generate-videos", "8"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    summary = records[-1]
    assert any(r["baseline"] is True for r in records) and summary["baseline"] is False
    assert summary["speedup"] is None and "--epochs" in summary["speedup_note"]


def test_end_to_end_with_gpu_decoding_needs_a_gpu(capsys):
    """--decode-device cuda (nvJPEG) stops with one line on a machine without a GPU, before any
    measurement; the baseline is not run for nothing."""
    assert cli.main(["bench", "train", *TINY, "--only", "end-to-end", "--n_threads", "0",
                     "--generate-videos", "8", "--batch_size", "4", "--decode-device", "cuda"]) == 2
    captured = capsys.readouterr()
    assert "--decode-device cuda" in captured.err and "Traceback" not in captured.err and captured.out == ""


def test_end_to_end_mixed_reports_the_share(capsys):
    """--decode-device mixed end to end, its device steps on the CPU (--assemble-device cpu):
    the line names the scheme and reports the GPU's final share and its history."""
    records = bench(capsys, "--only", "end-to-end", "--no-baseline", "--n_threads", "2", "--generate-videos", "8",
                    "--batch_size", "4", "--decode-device", "mixed", "--assemble-device", "cpu", "--video-copies", "4")
    (ours,) = records
    assert ours["decode_device"] == "mixed" and "a share of the batches" in ours["scheme"]
    assert 0.0 <= ours["gpu_decode_share"] <= 1.0 and isinstance(ours["gpu_decode_share_history"], list)
    assert ours["clips_per_s"] > 0 and ours["assemble_device"] == "cpu"


def test_assemble_device_cpu_needs_a_device_decode(capsys):
    assert cli.main(["bench", "train", *TINY, "--only", "end-to-end", "--generate-videos", "8", "--batch_size", "4",
                     "--assemble-device", "cpu", "--decode-device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert "--assemble-device cpu goes with --device cpu" in captured.err and "Traceback" not in captured.err


def test_sweep_measures_the_padded_stem_beside_the_plain_one(capsys):
    records = bench(capsys, "--only", "step", "--sweep", "--batch-sizes", "4", "--precisions", "fp32",
                    "--compile-modes", "none", "--stem-pad", "8")
    assert [r["setting"] for r in records] == ["baseline fp32 NCDHW", "fp32 NCDHW", "fp32 channels_last_3d",
                                               "fp32 channels_last_3d stem padded to 8 channels"]
    padded = records[-1]
    assert padded["stem_pad"] == 8 and padded["clips_per_s"] > 0 and padded["speedup"] > 0


@pytest.mark.parametrize("flags, words", [
    (["--video_path", "no-such-frames", "--annotation_path", "ann.json"], "--video_path no-such-frames: no such folder"),
    (["--video_path", "."], "--video_path needs --annotation_path"),
    (["--video_path", ".", "--annotation_path", "no-such.json"], "--annotation_path no-such.json: no such file"),
])
def test_missing_data_stops_before_the_step_measurements(capsys, tmp_path, monkeypatch, flags, words):
    """A wrong path was found only after the step lines (minutes on a GPU at real sizes)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ann.json").write_text("{}")
    assert cli.main(["bench", "train", *TINY, "--n_threads", "0", "--batch_size", "4", *flags]) == 2
    captured = capsys.readouterr()
    assert words in captured.err and captured.out == "", captured


def test_drain_steps_cover_twice_the_prefetch_queue():
    """The clock starts once a queue filled during cuDNN's autotuning is spent (twice its depth)."""
    import torch

    from resnet3d.bench.train_end_to_end import drain_steps

    data = list(range(8))
    assert drain_steps(torch.utils.data.DataLoader(data, num_workers=2, prefetch_factor=3)) == 12
    assert drain_steps(torch.utils.data.DataLoader(data, num_workers=0)) == 0


def test_the_end_to_end_stretch_spans_enough_epochs_for_one_pass():
    """The H200 plans' data: 2,880 clips (144 videos listed 20 times), batches of 64, 15 workers,
    8 warm-up and 200 timed steps: 329 batches, so one pass of the sampler spans 8 epochs; a large
    data set needs one."""
    assert train_end_to_end.stretch_rounds(2880, 64, 15, 8, 200) == 8
    assert 8 * 2880 >= (8 + 2 * 15 * 4 + 200) * 64 > 7 * 2880
    assert train_end_to_end.stretch_rounds(240_000, 64, 15, 8, 200) == 1
    assert train_end_to_end.stretch_rounds(10, 4, 0, 0, 1) == 1


def test_the_end_to_end_stretch_draws_every_step_from_one_loader_pass(capsys, monkeypatch):
    """Going round a small data set, each epoch's fresh iterator restarted the workers'
    pipeline, and the step waited for every worker's first batch every few dozen steps: each
    side now takes its warm-up and its timed steps from one pass of its loader."""
    from resnet3d.data.loader import WorkerLoader

    passes = []
    real_iter = WorkerLoader.__iter__

    def counted(self):
        passes.append(len(self))
        return real_iter(self)

    monkeypatch.setattr(WorkerLoader, "__iter__", counted)
    records = bench(capsys, "--only", "end-to-end", "--n_threads", "0", "--generate-videos", "8",
                    "--batch_size", "4", "--warmup", "2", "--steps", "5")
    baseline, ours = records
    assert len(passes) == 2, passes  # one pass per side, no second epoch's iterator
    assert baseline["epochs_per_pass"] == ours["epochs_per_pass"] == 4  # 2 + 5 + 1 batches of 4 from 8 clips
    assert all(batches >= 2 + 5 for batches in passes)


@pytest.mark.slow
def test_end_to_end_times_both_sides_after_the_same_drained_warm_up(tmp_path):
    """Two real workers on each side: both lines say how many untimed steps came first
    (--warmup plus twice the workers x prefetch queue), so neither side's timed steps are
    served from batches prefetched while the first steps ran."""
    done = subprocess.run(
        [sys.executable, "-m", "resnet3d", "bench", "train", *TINY, "--only", "end-to-end", "--warmup", "1",
         "--steps", "3", "--batch_size", "4", "--n_threads", "2", "--generate-videos", "8"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    baseline, ours = (json.loads(line) for line in done.stdout.splitlines())
    assert baseline["baseline"] is True and ours["baseline"] is False
    # prefetch_factor 4 (build_loader's, for both sides: tiny batches fit /dev/shm) x 2 workers x 2
    assert baseline["untimed_steps"] == ours["untimed_steps"] == 1 + 2 * 2 * 4
    assert baseline["clips_per_s"] > 0 and ours["clips_per_s"] > 0
