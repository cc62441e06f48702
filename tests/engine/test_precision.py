"""--precision auto: bf16 only on GPUs whose cuDNN convolves in bf16 (compute capability 8+);
older GPUs (T4, V100) would run every convolution in torch's slow fallback kernels."""
import pytest
import torch

from resnet3d.engine import precision
from resnet3d.engine.precision import autocast_dtype
from resnet3d.errors import UserError

CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize("capability, want", [((9, 0), torch.bfloat16), ((8, 0), torch.bfloat16),
                                              ((7, 5), None), ((7, 0), None)])
def test_auto_is_bf16_from_ampere_on(monkeypatch, capability, want):
    asked = []
    monkeypatch.setattr(precision.torch.cuda, "get_device_capability",
                        lambda device: asked.append(device) or capability)
    assert autocast_dtype("auto", CUDA) == want
    assert asked == [CUDA]  # the run's own GPU, not whichever is current
    assert autocast_dtype("bf16", CUDA) == torch.bfloat16  # asked for explicitly: as asked
    assert autocast_dtype("fp16", CUDA) == torch.float16


def test_cpu_choices():
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(UserError, match="fp16 needs CUDA"):
        autocast_dtype("fp16", cpu)
