"""``bench train --profile N``: where a training step's time goes, by kernel (CUDA) or operator
(CPU), and by kind of work."""
from __future__ import annotations

import json

import pytest

from resnet3d import cli
from resnet3d.bench.step_profile import device_kernels, kind_of, summarize

TINY = ["--model", "resnet", "--model_depth", "10", "--resnet_widen_factor", "0.25", "--n_classes", "8",
        "--sample_size", "32", "--sample_duration", "8", "--batch_size", "4", "--device", "cpu"]


@pytest.mark.parametrize("name, kind", [
    # CUDA kernel names as cuDNN and PyTorch give them
    ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_ndhwc_kernel", "convolution"),
    ("xmma_new::gemm::kernel<implicit_gemm_wgrad_indexed>", "convolution"),
    ("void cudnn::bn_bw_1C11_kernel_new<float>", "batch_norm"),
    ("void at::native::batch_norm_collect_statistics_channels_last_kernel<...>", "batch_norm"),
    ("void at::native::(anonymous namespace)::max_pool3d_with_indices_single_out_frame<...>", "pooling"),
    ("void at::native::multi_tensor_apply_kernel<FusedSgdMathFunctor<...>>", "optimizer"),
    ("Memcpy HtoD (Pinned -> Device)", "copy"),
    ("void nchwToNhwcKernel<__nv_bfloat16>", "copy"),
    ("void at::native::elementwise_kernel<128, 2, direct_copy_kernel_cuda>", "copy"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::threshold_kernel_impl>", "elementwise"),
    ("void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_16x16_128x2_tn_align8>", "matmul"),
    ("void at::native::reduce_kernel<512, 1, ReduceOp<float, MeanOps>>", "reduction"),
    # CPU operators
    ("aten::convolution_backward", "convolution"),
    ("aten::native_batch_norm_backward", "batch_norm"),
    ("aten::relu_", "elementwise"),
    ("some_unknown_kernel", "other"),
])
def test_kernel_and_operator_names_get_their_kind(name, kind):
    assert kind_of(name) == kind


def test_summary_adds_per_step_ranks_and_shares():
    events = [("aten::convolution_backward", 6000.0), ("aten::relu_", 1000.0), ("aten::convolution_backward", 2000.0),
              ("aten::native_batch_norm", 1000.0), ("idle", 0.0)]
    record = summarize(events, steps=2, top=2)
    assert record["profiled_ms_per_step"] == 5.0
    assert record["by_kind"] == {"convolution": 0.8, "elementwise": 0.1, "batch_norm": 0.1}
    assert record["top"] == [
        {"name": "aten::convolution_backward", "kind": "convolution", "ms_per_step": 4.0, "share": 0.8},
        {"name": "aten::relu_", "kind": "elementwise", "ms_per_step": 0.5, "share": 0.1},
    ]


def test_profile_lines_for_both_sides(capsys):
    assert cli.main(["bench", "train", *TINY, "--only", "step", "--steps", "1", "--warmup", "1", "--profile", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["what"], line["baseline"]) for line in lines] == [
        ("train_step", True), ("train_step_profile", True), ("train_step", False), ("train_step_profile", False)]
    for profile in (lines[1], lines[3]):
        assert profile["profiled_steps"] == 2 and profile["timing"] == "CPU self time of each operator"
        assert profile["profiled_ms_per_step"] > 0
        assert sum(profile["by_kind"].values()) == pytest.approx(1.0, abs=0.01)
        # a 3-D ResNet's step is mostly its convolutions, forward and backward
        assert max(profile["by_kind"], key=profile["by_kind"].get) == "convolution"
        assert profile["top"][0]["kind"] == "convolution"


def test_profile_with_sweep_is_refused(capsys):
    assert cli.main(["bench", "train", *TINY, "--only", "step", "--sweep", "--profile", "2"]) == 2
    assert "--profile profiles the one-step measurement" in capsys.readouterr().err


def test_device_copies_of_record_function_ranges_are_not_counted_as_kernels():
    """``Optimizer.step#SGD.step`` shows on the device too ("gpu_user_annotation"), spanning the
    optimiser's kernels: summed with them it would count them twice."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    def event(key, device_type, **flag):
        return SimpleNamespace(key=key, device_type=device_type, **flag)

    step = "Optimizer.step#SGD.step"
    kernel = "void at::native::multi_tensor_apply_kernel<FusedSgdMathFunctor<...>>"
    flagged = [event(step, DeviceType.CPU, is_user_annotation=True),
               event(step, DeviceType.CUDA, is_user_annotation=True),
               event(kernel, DeviceType.CUDA, is_user_annotation=False),
               event("Memcpy HtoD (Pinned -> Device)", DeviceType.CUDA, is_user_annotation=False),
               event("aten::add_", DeviceType.CPU, is_user_annotation=False)]
    assert [e.key for e in device_kernels(flagged)] == [kernel, "Memcpy HtoD (Pinned -> Device)"]
    # torch 2.4: no flag; the range's device event carries its CPU event's name
    unflagged = [event(step, DeviceType.CPU), event(step, DeviceType.CUDA), event(kernel, DeviceType.CUDA)]
    assert [e.key for e in device_kernels(unflagged)] == [kernel]


def test_profile_with_only_end_to_end_is_refused(capsys):
    assert cli.main(["bench", "train", *TINY, "--only", "end-to-end", "--profile", "2"]) == 2
    assert "--profile profiles the step measurement" in capsys.readouterr().err
