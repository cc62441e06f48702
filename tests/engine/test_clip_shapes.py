"""Clip sizes by arithmetic (engine.clip_shapes): for every family of the registry, at clip sizes
from far too small to ample, every layer's output size is the one a meta-device forward pass gives,
"fits" is said only where the meta forward runs, and a process that checks a clip does not import
torch's compiler stack."""
from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any, Dict, List, Tuple

import pytest
import torch
from torch import nn

import resnet3d
from resnet3d.engine.clip_shapes import shape_forward
from resnet3d.engine.model_start import check_clip_fits, shape_only_copy
from resnet3d.errors import UserError

# (arch, options): every family, and the options that change a clip's sizes
VARIANTS: List[Tuple[str, Dict[str, Any]]] = [
    ("resnet-10", {}),
    ("resnet-18", {"no_max_pool": True}),
    ("resnet-18", {"conv1_t_stride": 2, "conv1_t_size": 3}),
    ("resnet-10", {"shortcut_type": "A"}),
    ("resnet-50", {"shortcut_type": "C"}),
    ("preresnet-18", {}),
    ("wideresnet-50", {}),
    ("resnext-50", {}),
    ("resnet2p1d-18", {}),
    ("densenet-121", {}),
    ("densenet-121", {"no_max_pool": True}),
    ("c3d", {}),
    ("c3d", {"global_pooling": True}),
    ("c3d", {"batch_norm": True, "sample_size": 32, "sample_duration": 8}),
]
DURATIONS = (1, 8, 15)
SIZES = (1, 15, 29, 112)  # (DenseNet takes 15x29x29 and up; 8x15x15 without its max pool)


def _config(arch: str, options: Dict[str, Any]) -> Dict[str, Any]:
    with torch.device("meta"):
        return resnet3d.create_model(arch, n_classes=5, **options).model_config


def _layer_sizes(model: nn.Module, run) -> Tuple[List[Tuple[str, Tuple[int, ...]]], Any]:
    """(each module's output shape in call order, the outcome of ``run``: a shape or the error)."""
    seen: List[Tuple[str, Tuple[int, ...]]] = []
    handles = [module.register_forward_hook(lambda m, _, out, name=name: seen.append((name, tuple(out.shape))))
               for name, module in model.named_modules()]
    try:
        outcome = run()
        outcome = None if outcome is None else tuple(outcome.shape)
    except (RuntimeError, UserError) as error:
        outcome = error
    finally:
        for handle in handles:
            handle.remove()
    return seen, outcome


@pytest.mark.parametrize("arch,options", VARIANTS, ids=[f"{a}-{'-'.join(map(str, o.values()))}" for a, o in VARIANTS])
def test_every_layer_has_the_size_the_meta_forward_gives(arch, options):
    model = shape_only_copy(_config(arch, options))
    fits = too_small = 0
    for duration in DURATIONS:
        for size in SIZES:
            clip = torch.zeros(1, 3, duration, size, size, device="meta")
            by_arithmetic, answer = _layer_sizes(model, lambda: shape_forward(model, clip))
            by_meta, meta_answer = _layer_sizes(model, lambda: model(clip))
            where = f"{arch} {options} at {duration}x{size}x{size}"
            if isinstance(meta_answer, (RuntimeError, UserError)):  # the arithmetic leaves it to the meta forward
                too_small += isinstance(meta_answer, RuntimeError)  # (UserError: a C3D's check of its fc6 size)
                assert answer is None, where
            else:  # fits: the arithmetic says so by itself, with every layer's size
                fits += 1
                assert answer == meta_answer == (1, 5), where
                assert by_arithmetic == by_meta, where
    assert fits > 0
    # (the ResNets' and C3D's padded windows take clips of any size; DenseNet's 2x2x2 pools do not)
    assert (too_small > 0) == arch.startswith("densenet")


@pytest.mark.parametrize("op", ["conv", "max", "avg"])
def test_window_arithmetic_agrees_with_torch_on_the_cpu_and_on_meta(op):
    """Every kernel, stride, padding, dilation and ceil mode of small windows over inputs of 1-6:
    where the arithmetic answers, torch's CPU and meta kernels give that size; where it does not,
    one of them refuses the input."""
    from resnet3d.engine.clip_shapes import _CannotTell, _ShapeArithmetic

    def window(x: torch.Tensor, k: int, s: int, p: int, d: int, ceil: bool) -> torch.Tensor:
        if op == "conv":
            return torch.nn.functional.conv3d(x, weights[k, x.device.type], None, (s, 1, 1), (p, 0, 1), (d, 1, 1))
        if op == "max":
            return torch.nn.functional.max_pool3d(x, (k, 1, 2), (s, 1, 2), (p, 0, 1), (d, 1, 1), ceil)
        return torch.nn.functional.avg_pool3d(x, (k, 1, 2), (s, 1, 2), (p, 0, 1), ceil)

    def outcome(run) -> Any:
        try:
            return tuple(run().shape)
        except (RuntimeError, _CannotTell):
            return None

    weights = {(k, device): torch.zeros(1, 1, k, 1, 2, device=device)
               for k in (1, 2, 3, 4) for device in ("cpu", "meta")}
    answered = 0
    for k, s, p, d, ceil in itertools.product((1, 2, 3, 4), (1, 2, 3), (0, 1, 2), (1, 2), (False, True)):
        if (op == "conv" and ceil) or (op == "avg" and d > 1):
            continue
        for n in range(1, 7):
            shape = (1, 1, n, 2, 2)

            def by_arithmetic(clip=torch.empty(shape, device="meta")):
                with _ShapeArithmetic():
                    return window(clip, k, s, p, d, ceil)

            answer = outcome(by_arithmetic)
            cpu = outcome(lambda: window(torch.zeros(shape), k, s, p, d, ceil))
            meta = outcome(lambda: window(torch.zeros(shape, device="meta"), k, s, p, d, ceil))
            assert answer is None or answer == cpu == meta, (k, s, p, d, ceil, n)
            assert answer is not None or cpu is None or meta is None, (k, s, p, d, ceil, n)
            answered += answer is not None
    assert answered > 100


@pytest.mark.parametrize("arch", resnet3d.list_models())
def test_every_architecture_at_the_usual_clip(arch):
    model = shape_only_copy(_config(arch, {}))
    clip = torch.zeros(1, 3, 16, 112, 112, device="meta")
    by_arithmetic, answer = _layer_sizes(model, lambda: shape_forward(model, clip))
    by_meta, meta_answer = _layer_sizes(model, lambda: model(clip))
    assert answer == meta_answer == (1, 5) and by_arithmetic == by_meta


def test_ceil_mode_padding_and_dilation_of_a_pool_and_a_conv():
    """Cases the zoo does not build: a padded, dilated, ceil-mode max pool, a strided avg pool in
    ceil mode, a dilated conv, adaptive pooling to a size, and a flatten into a linear layer."""

    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv3d(3, 4, kernel_size=(3, 5, 2), stride=(1, 2, 3), padding=(1, 0, 2), dilation=(2, 1, 3))
            self.max = nn.MaxPool3d(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)
            self.avg = nn.AvgPool3d(kernel_size=(1, 3, 2), stride=(1, 2, 2), ceil_mode=True)
            self.adaptive = nn.AdaptiveAvgPool3d((None, 2, 1))
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            x = self.adaptive(self.avg(self.max(torch.relu(self.conv(x)))))
            return self.fc(torch.flatten(x, 1)[:, :4])  # (N, 4)

    with torch.device("meta"):
        model = Odd().eval()
    fits = 0
    for duration in range(1, 12):
        for size in (1, 4, 7, 9, 12, 17, 20, 31):
            clip = torch.zeros(1, 3, duration, size, size, device="meta")
            by_arithmetic, answer = _layer_sizes(model, lambda: shape_forward(model, clip))
            by_meta, meta_answer = _layer_sizes(model, lambda: model(clip))
            if isinstance(meta_answer, RuntimeError):
                assert answer is None
            else:
                fits += 1
                assert answer == meta_answer and by_arithmetic == by_meta, (duration, size)
    assert fits > 10


def test_an_operation_without_a_rule_leaves_it_to_the_meta_forward():
    class Sigmoid(nn.Module):
        def forward(self, x):
            return torch.sigmoid(x)

    with torch.device("meta"):
        model = Sigmoid()
    assert shape_forward(model, torch.zeros(1, 3, 4, 8, 8, device="meta")) is None


def test_too_small_clips_still_get_torch_words_and_the_flags():
    """check_clip_fits: the arithmetic finds the clip too small, the meta forward names the layer;
    a C3D's own words for a clip its fc6 does not fit come through as they did."""
    densenet = resnet3d.create_model("densenet", 121, n_classes=3)
    with pytest.raises(UserError, match=r"clips of 4x32x32 frames are too small for densenet-121 \(.*(smaller than "
                                        r"kernel size|Output size is too small|Kernel size can't be greater).*\): "
                                        r"raise --sample_duration and/or --sample_size"):
        check_clip_fits(densenet, 3, 4, 32)
    check_clip_fits(densenet, 3, 16, 32)  # fits: no error
    c3d = resnet3d.create_model("c3d", n_classes=3, sample_size=32, sample_duration=8)
    with pytest.raises(UserError, match="accepts clips of T in 1-16, H in 1-32, W in 1-32 .e.g. 8x32x32.; got 8x48x48"):
        check_clip_fits(c3d, 3, 8, 48)
    check_clip_fits(c3d, 3, 8, 32)


CHECK_EVERY_FAMILY = """
import sys, torch, resnet3d
from resnet3d.engine.model_start import check_clip_fits
for arch in ("resnet-18", "preresnet-10", "wideresnet-50", "resnext-50", "resnet2p1d-10", "densenet-121", "c3d"):
    with torch.device("meta"):
        model = resnet3d.create_model(arch, n_classes=3)
    check_clip_fits(model, 3, 16, 112)
heavy = sorted(name for name in ("torch._dynamo", "sympy") if name in sys.modules)
print("imported:", heavy)
"""


def test_checking_a_clip_that_fits_imports_no_compiler_stack():
    """The point of the arithmetic: a meta forward imports torch._dynamo and sympy (1.1 s of CPU)."""
    done = subprocess.run([sys.executable, "-c", CHECK_EVERY_FAMILY], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "imported: []" in done.stdout, done.stdout
