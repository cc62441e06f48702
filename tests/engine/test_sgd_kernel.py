"""Fused SGD on CUDA: which kernel build_optimizer picks, and checkpoints that load whichever
kernel wrote them (the saved state carries the writer's kernel flag, which must not carry over)."""
import copy
import inspect
import math

import pytest
import torch
from torch import nn

from resnet3d.config import OptimConfig
from resnet3d.engine.optim import build_optimizer, load_optimizer_state, sgd_kernel, sgd_kernel_name


def test_fused_only_when_every_parameter_is_on_cuda_and_sgd_offers_it():
    with_fused = ("params", "lr", "momentum", "foreach", "fused")
    assert sgd_kernel({"cuda"}, with_fused) == {"fused": True}
    assert sgd_kernel({"cpu"}, with_fused) == {}
    assert sgd_kernel({"cuda", "cpu"}, with_fused) == {}
    assert sgd_kernel({"cuda"}, ("params", "lr", "momentum", "foreach")) == {}  # an older torch
    # this torch, read at run time
    assert sgd_kernel({"cuda"}) == ({"fused": True} if "fused" in inspect.signature(torch.optim.SGD).parameters else {})


def test_cpu_parameters_keep_torchs_default_kernel():
    optimizer = build_optimizer(nn.Linear(3, 2).parameters(), OptimConfig())
    assert not optimizer.param_groups[0]["fused"] and sgd_kernel_name(optimizer) == "for-loop"


def model_and_batch():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)), torch.randn(8, 5), torch.randint(0, 3, (8,))


def step(model, optimizer, x, y):
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def sgd(model, **kernel):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3, **kernel)


@pytest.mark.parametrize("writer, reader", [({"fused": True}, {}), ({}, {"fused": True}), ({"foreach": True}, {})])
def test_a_checkpoint_loads_whichever_kernel_wrote_it(tmp_path, writer, reader):
    """fused SGD runs on the CPU in this torch, so both directions are exercised here: the state
    goes through torch.save / torch.load(weights_only=True) as a checkpoint's does."""
    model, x, y = model_and_batch()
    optimizer = sgd(model, **writer)
    for _ in range(2):
        step(model, optimizer, x, y)
    torch.save({"optimizer": optimizer.state_dict()}, tmp_path / "model_2.pth")
    saved = torch.load(tmp_path / "model_2.pth", weights_only=True)["optimizer"]

    continued = copy.deepcopy(model)
    reader_optimizer = sgd(continued, **reader)
    load_optimizer_state(reader_optimizer, saved)
    group = reader_optimizer.param_groups[0]
    assert bool(group["fused"]) == bool(reader.get("fused")) and group["foreach"] == reader.get("foreach")
    assert group["lr"] == 0.1 and group["momentum"] == 0.9
    for p, q in zip(model.parameters(), continued.parameters()):
        assert torch.equal(optimizer.state[p]["momentum_buffer"], reader_optimizer.state[q]["momentum_buffer"])
    step(model, optimizer, x, y)  # the unbroken run
    step(continued, reader_optimizer, x, y)
    for p, q in zip(model.parameters(), continued.parameters()):
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-7)


def test_torchs_own_loader_would_carry_the_writers_kernel_over():
    """Why load_optimizer_state exists: plain load_state_dict takes the saved 'fused' flag."""
    model, x, y = model_and_batch()
    fused = sgd(model, fused=True)
    step(model, fused, x, y)
    plain = sgd(copy.deepcopy(model))
    plain.load_state_dict(fused.state_dict())
    assert plain.param_groups[0]["fused"] is True


def test_the_trainer_restores_a_fused_runs_optimizer_into_a_cpu_run():
    from resnet3d.engine.distributed import DistInfo
    from resnet3d.engine.model_start import Start
    from resnet3d.engine.run_checkpoints import restore_training_state
    from resnet3d.engine.schedules import build_schedule

    model, x, y = model_and_batch()
    fused = sgd(model, fused=True)
    step(model, fused, x, y)
    schedule = build_schedule(OptimConfig(), 10)
    start = Start(epoch=2, ours={"optimizer": fused.state_dict(), "scheduler": schedule.state_dict()})
    continued = copy.deepcopy(model)
    optimizer = build_optimizer(continued.parameters(), OptimConfig(learning_rate=0.1, weight_decay=1e-3))
    restore_training_state(start, optimizer, schedule, None, DistInfo())
    assert not optimizer.param_groups[0]["fused"] and not start.notes
    buffers = [optimizer.state[p]["momentum_buffer"] for p in continued.parameters()]
    assert all(b is not None and math.isfinite(float(b.abs().sum())) for b in buffers)


def conv_model_and_batch(channels_last: bool):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(2, 3, 4, 6, 6)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return model, x, torch.tensor([0, 2])


@pytest.mark.parametrize("writer_channels_last", [False, True], ids=["contiguous-writer", "channels-last-writer"])
def test_momentum_loaded_across_memory_formats_takes_the_parameters_layout(writer_channels_last):
    """A CPU run's checkpoint (contiguous weights) continued by a CUDA run in channels_last_3d, or
    the reverse: the saved momentum buffers keep the writer's strides. The fused kernel needs them
    laid out as the parameters (on CUDA it raises; on the CPU, as here, it reads them as flat
    memory and gets the update wrong), so its step must equal the for-loop kernel's (which takes
    any strides) from the same state, on the same model."""
    writer, x, y = conv_model_and_batch(writer_channels_last)
    optimizer = sgd(writer)
    step(writer, optimizer, x, y)
    saved = copy.deepcopy(optimizer.state_dict())  # (as a checkpoint: no buffer shared with the writer)

    reader, x_reader, _ = conv_model_and_batch(not writer_channels_last)
    reader.load_state_dict(writer.state_dict())
    plain = copy.deepcopy(reader)
    fused = sgd(reader, fused=True)
    load_optimizer_state(fused, saved)
    for p in reader.parameters():
        assert fused.state[p]["momentum_buffer"].stride() == p.stride()
    loop = sgd(plain)
    loop.load_state_dict(copy.deepcopy(saved))
    step(reader, fused, x_reader, y)
    step(plain, loop, x_reader, y)
    for p, q in zip(reader.parameters(), plain.parameters()):
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-7)
