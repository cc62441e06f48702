"""Fast checks of the engine's parts: logs, checkpoints, freezing, metrics, the epoch loop."""
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from resnet3d.config import OptimConfig
from resnet3d.engine import checkpoint as ckpt
from resnet3d.engine.logs import TRAIN_BATCH_COLUMNS, TRAIN_COLUMNS, TSVLog, read_log, rows_through
from resnet3d.engine.loop import StepParts, train_one_epoch
from resnet3d.engine.optim import build_optimizer, freeze, top_level_name, trainable_names
from resnet3d.engine.schedules import Schedule
from resnet3d.errors import UserError
from resnet3d.metrics import VideoScores, confusion_matrix, mean_class_accuracy, topk_correct
from resnet3d.models import create_model


def test_logs_continue_keep_earlier_epochs(tmp_path):
    path = tmp_path / "train.log"
    log = TSVLog(path, TRAIN_COLUMNS)
    for epoch in (1, 2, 3):
        log.log(epoch=epoch, loss=1.0 / epoch, acc=0.5, lr=0.1)
    log.close()
    log = TSVLog(path, TRAIN_COLUMNS, rows_through(2))  # continue after epoch 2
    log.log(epoch=3, loss=0.25, acc=0.75, lr=0.01)
    log.close()
    rows = read_log(path)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[1]["loss"] == repr(0.5) and rows[2]["loss"] == "0.25"
    assert path.read_text().splitlines()[0] == "epoch\tloss\tacc\tlr"


def test_batch_log_keeps_the_steps_of_an_interrupted_epoch(tmp_path):
    path = tmp_path / "train_batch.log"
    log = TSVLog(path, TRAIN_BATCH_COLUMNS)
    for epoch in (1, 2):
        for batch in (1, 2, 3):
            log.log(epoch=epoch, batch=batch, iter=(epoch - 1) * 3 + batch, loss=0.1, acc=0.0, lr=0.1)
    log.close()
    TSVLog(path, TRAIN_BATCH_COLUMNS, rows_through(1, 2)).close()  # 1 epoch and 2 steps done
    assert [(r["epoch"], r["batch"]) for r in read_log(path)] == [("1", "1"), ("1", "2"), ("1", "3"), ("2", "1"), ("2", "2")]
    TSVLog(path, TRAIN_BATCH_COLUMNS).close()  # a fresh run starts empty
    assert read_log(path) == []


def test_checkpoint_round_trip_and_latest(tmp_path):
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    state = ckpt.rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    ckpt.save_checkpoint(tmp_path / "model_2.pth", {"epoch": 2, "rng_state": state, "state_dict": {"w": torch.ones(2)}})
    data = ckpt.read_checkpoint(tmp_path / "model_2.pth")  # weights_only=True inside
    assert data["format"] == "resnet3d" and data["epoch"] == 2
    ckpt.set_rng_state(data["rng_state"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    ckpt.save_checkpoint(tmp_path / "model_10.pth", {"epoch": 10})
    ckpt.save_checkpoint(tmp_path / ckpt.INTERRUPTED_NAME, {"epoch": 10, "step_in_epoch": 3})
    assert ckpt.find_latest(tmp_path).name == ckpt.INTERRUPTED_NAME
    ckpt.save_checkpoint(tmp_path / "model_11.pth", {"epoch": 11})
    assert ckpt.find_latest(tmp_path).name == "model_11.pth"
    assert ckpt.continue_path(tmp_path, 3).name == "model_2.pth"
    (tmp_path / "model_4.t7").write_bytes(b"seed")
    assert ckpt.continue_path(tmp_path, 5).name == "model_4.t7"
    with pytest.raises(UserError, match="holds none of model_6.pth, model_6.t7, save_6.pth"):
        ckpt.continue_path(tmp_path, 7)
    assert not list(tmp_path.glob("*.tmp"))


def test_only_our_checkpoints_count_as_a_runs_progress(tmp_path):
    """A model_interrupted.pth that is not ours (another program's, or a bare state dict) or does
    not load is neither continued from nor set aside; the originals' save_<N>.pth never is."""
    ckpt.save_checkpoint(tmp_path / "model_3.pth", {"epoch": 3})
    torch.save({"epoch": 9, "state_dict": {}}, tmp_path / ckpt.INTERRUPTED_NAME)  # no format stamp
    torch.save({"epoch": 9}, tmp_path / "save_9.pth")
    assert ckpt.find_latest(tmp_path).name == "model_3.pth"
    assert ckpt.checkpoints_after(tmp_path, (1, 0), None) == [tmp_path / "model_3.pth"]
    (tmp_path / ckpt.INTERRUPTED_NAME).write_bytes(b"cut short")
    assert ckpt.find_latest(tmp_path).name == "model_3.pth"
    ckpt.save_checkpoint(tmp_path / ckpt.BEST_NAME, {"epoch": 2})
    ckpt.save_checkpoint(tmp_path / ckpt.INTERRUPTED_NAME, {"epoch": 3, "step_in_epoch": 4})
    assert ckpt.find_latest(tmp_path).name == ckpt.INTERRUPTED_NAME
    assert ckpt.checkpoints_after(tmp_path, (2, 0), tmp_path / "model_3.pth") == [tmp_path / ckpt.INTERRUPTED_NAME]


def test_model_best_is_a_checkpoint_to_continue_from(tmp_path):
    """With --checkpoint 10 a run killed in its first nine epochs has only model_best.pth:
    --resume auto took the folder for one without a checkpoint, removed model_best.pth and
    started over (and preferred an older model_interrupted.pth to it)."""
    ckpt.save_checkpoint(tmp_path / ckpt.BEST_NAME, {"epoch": 3})
    assert ckpt.find_latest(tmp_path).name == ckpt.BEST_NAME
    ckpt.save_checkpoint(tmp_path / ckpt.INTERRUPTED_NAME, {"epoch": 0, "step_in_epoch": 10})
    assert ckpt.find_latest(tmp_path).name == ckpt.BEST_NAME
    ckpt.save_checkpoint(tmp_path / "model_3.pth", {"epoch": 3})  # the same state: named by its epoch
    assert ckpt.find_latest(tmp_path).name == "model_3.pth"


def _tiny():
    return create_model("resnet", 10, n_classes=3, widen_factor=0.25)


def test_ft_begin_module_trains_that_module_on():
    model = _tiny()
    names = trainable_names(model, ft_begin_module="layer4")
    assert names and all(top_level_name(n) in ("layer4", "fc") for n in names)
    assert "fc.weight" in names and not any(n.startswith("layer3") for n in names)
    trained = freeze(model, names)
    assert {id(p) for p in trained} == {id(p) for n, p in model.named_parameters() if n in names}
    assert not model.conv1.weight.requires_grad and model.fc.weight.requires_grad
    with pytest.raises(UserError, match="conv1, bn1, layer1, layer2, layer3, layer4, fc"):
        trainable_names(model, ft_begin_module="layer5")
    assert top_level_name("module.features.denseblock1.denselayer1.conv1.weight") == "denseblock1"


def test_ft_begin_index_names_the_block_of_the_model_as_built():
    """--ft_begin_index reads layer<K> / denseblock<K> off the model itself: fine-tuning builds the
    pretrained file's architecture, and a DenseNet file with no --model got "no module layer4"."""
    densenet = create_model("densenet", 121, n_classes=3)
    names = trainable_names(densenet, ft_begin_index=4)
    assert names and {top_level_name(n) for n in names} == {"denseblock4", "norm5", "classifier"}
    assert trainable_names(densenet, ft_begin_index=5) == {"features.norm5.weight", "features.norm5.bias", "classifier.weight",
                                                           "classifier.bias"}
    assert trainable_names(_tiny(), ft_begin_index=5) == {"fc.weight", "fc.bias"}
    assert {top_level_name(n) for n in trainable_names(_tiny(), ft_begin_index=3)} == {"layer3", "layer4", "fc"}
    with pytest.raises(UserError, match="must be 0 .* or 1..5"):
        trainable_names(_tiny(), ft_begin_index=6)


def test_freeze_params_counts_layers_from_the_output():
    model = _tiny()
    assert trainable_names(model, freeze_params=1) == {"fc.weight", "fc.bias"}
    # The seed walks back from the output; in a block's ConcatTable the shortcut comes last, so
    # after the classifier it meets the shortcut's BN and conv, as our registration order does.
    assert trainable_names(model, freeze_params=3) == {
        "fc.weight", "fc.bias", "layer4.0.downsample.1.weight", "layer4.0.downsample.1.bias",
        "layer4.0.downsample.0.weight"}
    assert "layer4.0.bn2.weight" in trainable_names(model, freeze_params=4)
    with pytest.raises(UserError, match="only"):
        trainable_names(model, freeze_params=10_000)


@pytest.mark.parametrize("field, flag", [("learning_rate", "--learning_rate"), ("momentum", "--momentum"),
                                         ("weight_decay", "--weight_decay"), ("dampening", "--dampening")])
def test_negative_optimiser_settings_are_user_errors(field, flag):
    """Not torch's ValueError traceback from inside SGD's constructor."""
    model = nn.Linear(2, 2)
    for value in (-1.0, float("nan")):
        with pytest.raises(UserError, match=rf"{flag}.*\[optim\] {field}\) {value}: must be 0 or more"):
            build_optimizer(model.parameters(), OptimConfig(**{field: value}))


def test_a_milestone_before_the_first_epoch_is_refused():
    """A milestone counts finished epochs; 0 lowered the rate from the first epoch on, silently."""
    from resnet3d.engine.schedules import build_schedule

    for milestones in ((0, 10), (-5,)):
        with pytest.raises(UserError, match=r"\[optim\] multistep_milestones\) (0|-5): .*1 or more"):
            build_schedule(OptimConfig(multistep_milestones=milestones), n_epochs=20)
    assert build_schedule(OptimConfig(multistep_milestones=(1, 10)), n_epochs=20).values(1)[0] == pytest.approx(0.01)


def test_cosine_and_plateau_settings_out_of_range_are_refused():
    """--warmup-epochs -1 started the cosine at half the rate, and --min-lr 1 over --lr 0.01 made
    the 'decay' climb to 0.99: both were taken without a word."""
    from resnet3d.engine.schedules import build_schedule

    with pytest.raises(UserError, match=r"--warmup-epochs \(\[optim\] warmup_epochs\) -1.0: must be 0 or more"):
        build_schedule(OptimConfig(lr_scheduler="cosine", warmup_epochs=-1.0), n_epochs=10)
    for scheduler in ("cosine", "plateau"):
        with pytest.raises(UserError, match=r"--min-lr \(\[optim\] min_lr\) 1.0: must be between 0 and the learning"):
            build_schedule(OptimConfig(lr_scheduler=scheduler, learning_rate=0.01, min_lr=1.0), n_epochs=10)
    assert build_schedule(OptimConfig(lr_scheduler="cosine", min_lr=0.001), n_epochs=10).values(10, 1.0)[0] < 0.01


def test_optimizer_follows_the_config():
    model = _tiny()
    opt = build_optimizer(model.parameters(), OptimConfig(learning_rate=0.3, momentum=0.8, weight_decay=0.1, nesterov=True))
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.3, 0.8, 0.1, True)
    with pytest.raises(UserError, match="nesterov"):
        build_optimizer(model.parameters(), OptimConfig(nesterov=True, dampening=0.5))


def test_metrics():
    logits = torch.tensor([[3.0, 1, 0], [0, 2, 1], [0, 1, 2], [2, 0, 1]])
    targets = torch.tensor([0, 2, 2, 1])
    assert topk_correct(logits, targets, (1, 2, 5)) == {1: 2, 2: 3, 5: 4}
    matrix = confusion_matrix(logits.argmax(1), targets, 3)
    assert matrix.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert math.isclose(mean_class_accuracy(matrix), (1 + 0 + 0.5) / 3)
    scores = VideoScores(torch.tensor([0, 1, -1]), 3)
    # video 0: one clip right, one clip wrong but confident -> the average decides
    scores.add(torch.tensor([0, 0, 1, 2]), torch.tensor([[5.0, 0, 0], [0, 1, 0], [0, 3, 0], [9, 0, 0]]))
    assert scores.accuracy() == 1.0  # unlabelled video 2 is not counted
    scores.add(torch.tensor([1]), torch.tensor([[0.0, 0, 10]]))
    assert scores.accuracy() == 0.5


def test_curves_png(tmp_path):
    from resnet3d.report import plot_confusion_matrix, plot_curves

    train = [{"epoch": "1", "loss": "1.5", "acc": "0.3"}, {"epoch": "2", "loss": "1.1", "acc": "0.5"}]
    val = [{"epoch": "1", "loss": "1.6", "acc": "0.25", "video_acc": "0.3"}, {"epoch": "2", "loss": "1.2", "acc": "0.4", "video_acc": ""}]
    plot_curves(train, val, tmp_path / "curves.png", title="resnet-10")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_confusion_matrix([[3, 1], [0, 4]], ["a", "b"], tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"


class _Poisoned(nn.Module):
    """A linear classifier whose output turns NaN from the ``bad_step``-th call on."""

    def __init__(self, bad_step: int) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.calls = 0
        self.bad_step = bad_step

    def forward(self, x):
        self.calls += 1
        out = self.fc(x.mean(dim=(2, 3, 4)))
        return out * float("nan") if self.calls >= self.bad_step else out


def _parts(model):
    to_float = lambda clips, generator=None: clips.permute(0, 4, 1, 2, 3).float() / 255  # noqa: E731
    return StepParts(model=model, eval_model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scaler=None,
                     device=torch.device("cpu"), amp_dtype=None, train_transform=to_float, eval_transform=to_float)


def _batches(n):
    generator = torch.Generator().manual_seed(0)
    return [{"clip": torch.randint(0, 255, (4, 2, 4, 4, 3), dtype=torch.uint8, generator=generator),
             "target": torch.tensor([0, 1, 0, 1]), "bad_frames": torch.zeros(4, dtype=torch.int64)} for _ in range(n)]


def test_nonfinite_loss_stops_the_epoch():
    model = _Poisoned(bad_step=3)
    rows = []
    result = train_one_epoch(_parts(model), _batches(6), 1, Schedule(0.1, 0.0), 6, on_batch=rows.append,
                             show_progress=False)
    assert result.nonfinite and "batch 3" in result.nonfinite
    assert [r["batch"] for r in rows] == [1, 2]  # the bad step is never logged
    assert model.calls == 4  # detection is one step late: the step after is already queued


def test_stop_request_finishes_the_step_in_flight():
    asked = iter([False, True])
    result = train_one_epoch(_parts(_Poisoned(bad_step=99)), _batches(6), 1, Schedule(0.1, 0.0), 6,
                             stop_requested=lambda: next(asked, True), show_progress=False)
    assert result.stopped and result.steps == 3 and result.count == 12
    full = train_one_epoch(_parts(_Poisoned(bad_step=99)), _batches(6), 1, Schedule(0.1, 0.0), 6, show_progress=False)
    assert not full.stopped and full.steps == 6 and full.count == 24


def test_validation_does_not_score_a_clip_standing_in_for_an_unreadable_video():
    """The stand-in is another video's clip: scored, it counted that video twice (its clip loss,
    its accuracy and its video average), while the unreadable video was only counted."""
    from resnet3d.engine.loop import validate

    model = _Poisoned(bad_step=99)
    batch = _batches(1)[0]
    batch["video"] = torch.tensor([0, 1, 2, 3])
    readable = {key: value[:3] for key, value in batch.items()}
    with_stand_in = dict(batch, video=torch.tensor([0, 1, 2, 0]), target=torch.tensor([0, 1, 0, 0]),
                         clip=torch.cat([batch["clip"][:3], batch["clip"][:1]]),
                         bad_video=torch.tensor([0, 0, 0, 1]))
    targets = torch.tensor([0, 1, 0, 1])  # video 3 (the unreadable one) has no clip of its own
    want = validate(_parts(model), [dict(readable, bad_video=torch.zeros(3, dtype=torch.int64))], targets, 2,
                    show_progress=False)
    got = validate(_parts(model), [with_stand_in], targets, 2, show_progress=False)
    assert got["count"] == want["count"] == 3 and got["bad_videos"] == 1
    assert (got["loss"], got["acc"], got["video_acc"]) == pytest.approx((want["loss"], want["acc"], want["video_acc"]))


def test_one_autocast_rule_for_training_benchmarks_and_recognition():
    """--precision means the same in every command: one definition, in engine/precision.py."""
    import resnet3d
    from resnet3d.engine import precision, predict

    package = Path(resnet3d.__file__).parent
    defining = sorted(path.relative_to(package).as_posix() for path in package.rglob("*.py")
                      if "def autocast_dtype" in path.read_text(encoding="utf-8"))
    assert defining == ["engine/precision.py"]
    assert predict.autocast_dtype is precision.autocast_dtype


def test_rendezvous_ports_come_from_below_the_ephemeral_range(monkeypatch):
    import socket

    from resnet3d.engine import distributed

    # outgoing connections take ports from the ephemeral range at any moment; ours stay below it
    monkeypatch.setattr(distributed, "_ephemeral_port_floor", lambda: 40000)
    ports = {distributed.free_port() for _ in range(20)}
    assert all(28000 <= port < 40000 for port in ports) and len(ports) > 1
    with socket.socket() as taken:  # a port in use is never offered
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(distributed, "_ephemeral_port_floor", lambda: taken.getsockname()[1] + 1)

        class OnlyTheTakenPort:
            def sample(self, population, k):
                return [population[-1]]

        monkeypatch.setattr(distributed.random, "Random", OnlyTheTakenPort)
        assert distributed.free_port() != taken.getsockname()[1]


def test_the_cpu_fallback_warning_offers_each_command_a_flag_it_takes(monkeypatch, capsys):
    import argparse

    from resnet3d.commands import main as main_command
    from resnet3d.commands import train as train_command
    from resnet3d.config import Config, DataConfig, HardwareConfig
    from resnet3d.engine.distributed import DistInfo
    from resnet3d.engine.process_setup import resolve_device

    # `resnet3d main --n_gpu 2` (the seed's README) on a machine without CUDA: the warning said
    # "pass --no_cuda or --device cpu", and main refuses --device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = Config(data=DataConfig(), hardware=HardwareConfig(device="cuda", n_gpus=2))
    assert resolve_device(config, DistInfo()) == torch.device("cpu")
    line = capsys.readouterr().err.strip()
    assert "CUDA is not available (--n_gpus 2)" in line
    assert "pass --no_cuda," in line and "--device cpu to resnet3d train" in line
    for command, flags in ((main_command, ["--no_cuda"]), (train_command, ["--device", "cpu"])):
        parser = argparse.ArgumentParser()
        command.add_arguments(parser)
        assert parser.parse_known_args(flags)[1] == []
    main_parser = argparse.ArgumentParser()
    main_command.add_arguments(main_parser)
    assert main_parser.parse_known_args(["--device", "cpu"])[1] != []  # hence the command named beside it
