"""The originals' command lines -> the frozen config (no training here; see tests/engine)."""
import argparse
import json
import math

import pytest

from resnet3d import cli, compat
from resnet3d.commands import train as train_command
from resnet3d.config import Config, InferenceConfig, Regime
from resnet3d.data.config import DataConfig
from resnet3d.engine.schedules import build_schedule
from resnet3d.errors import UserError
from resnet3d.lr_lua import parse_lr_lua
from resnet3d.normalization import ACTIVITYNET, KINETICS, SEED, InputNorm

SEED_LR_RESNETS = """opt.regimes = {
-- start, end,    LR,   WD,
  {   1,    100,   1e-1,   1e-3, },
  { 101,    150,   1e-2,   1e-3, },
  { 151,    1e8,   1e-3,   1e-3, },
}
"""
SEED_LR_C3D = """opt.regimes = {
-- start, end,    LR,   WD,
  {   1,     85,   1e-3,   1e-3, },
  {  86,    130,   1e-4,   1e-3  },
  { 131,    1e8,   1e-5,   1e-3 },
}

"""


def translate(argv, command="main"):
    args = cli.build_parser(command).parse_args(argv)
    if command == "train":
        return train_command.config_from_args(args), []
    return compat.config_from_args(args)


# -- every option of both originals is accepted and does what it says --------------------------

# (argv, check(config, notices)). Written from the originals' option lists (opts.lua, opts.py,
# REFERENCE.md section 3), independently of compat.OPTIONS.
SEED_OPTIONS = [
    (["--root_path", "/data", "--video_path", "v"], lambda c, n: c.data.video_path == "/data/v"),
    (["--video_path", "frames"], lambda c, n: c.data.video_path == "frames"),
    (["--annotation_path", "k.json"], lambda c, n: c.data.annotation_path == "k.json"),
    (["--premodel_path", "m.t7"], lambda c, n: c.finetune.pretrained == "m.t7"),
    (["--bgr_premodel"], lambda c, n: c.finetune.bgr_premodel),
    (["--result_path", "out"], lambda c, n: c.run.result_path == "out"),
    (["--dataset", "activitynet"], lambda c, n: c.data.dataset == "activitynet"),
    (["--lr_path", "{lr}"], lambda c, n: c.optim.lr_scheduler == "regimes" and len(c.optim.regimes) == 3),
    (["--n_classes", "200"], lambda c, n: c.model.n_classes == 200),
    (["--sample_size", "96"], lambda c, n: c.data.sample_size == 96),
    (["--sample_duration", "8"], lambda c, n: c.data.sample_duration == 8),
    (["--initial_scale", "0.9"], lambda c, n: c.data.initial_scale == 0.9),
    (["--n_scales", "3"], lambda c, n: c.data.n_scales == 3),
    (["--scale_step", "0.5"], lambda c, n: c.data.scale_step == 0.5),
    (["--learning_rate", "0.001"], lambda c, n: c.optim.learning_rate == 0.001),
    (["--weight_decay", "0"], lambda c, n: c.optim.weight_decay == 0.0),
    (["--momentum", "0.5"], lambda c, n: c.optim.momentum == 0.5),
    (["--dropout_ratio", "0.3"], lambda c, n: c.model.dropout_ratio == 0.3),
    (["--batch_size", "40"], lambda c, n: c.run.batch_size == 40),
    (["--n_epochs", "1000"], lambda c, n: c.run.n_epochs == 1000),
    (["--begin_epoch", "101"], lambda c, n: c.run.begin_epoch == 101),
    (["--n_val_samples", "5"], lambda c, n: c.data.n_val_samples == 5),
    (["--no_train"], lambda c, n: not c.run.train),
    (["--no_test"], lambda c, n: not c.run.val),
    (["--no_val"], lambda c, n: not c.run.val),
    (["--test_video"], lambda c, n: c.inference.flavour == "seed" and c.inference.top_k == 10),
    (["--test_video", "--test_subset", "test"], lambda c, n: c.inference.subset == "test"),
    (["--no_cuda"], lambda c, n: c.hardware.device == "cpu"),
    (["--gpu_id", "2"], lambda c, n: c.hardware.gpu_id == 1),
    (["--n_gpus", "2"], lambda c, n: c.hardware.n_gpus == 2),
    (["--n_gpu", "2"], lambda c, n: c.hardware.n_gpus == 2),
    (["--n_threads", "4"], lambda c, n: c.data.num_workers == 4),
    (["--checkpoint", "5"], lambda c, n: c.run.checkpoint_every == 5),
    (["--manual_seed", "0"], lambda c, n: c.run.manual_seed == 0),
    (["--crop", "c"], lambda c, n: c.data.train_crop == "corner"),
    (["--crop", "r"], lambda c, n: c.data.train_crop == "multiscale_random"),
    (["--no_hflip"], lambda c, n: not c.data.hflip),
    (["--batch_norm"], lambda c, n: c.model.batch_norm),
    (["--global_pooling"], lambda c, n: c.model.global_pooling),
    (["--model", "c3d"], lambda c, n: c.model.arch == "c3d" and c.model.depth is None),
    (["--resnet_depth", "34"], lambda c, n: c.model.model_depth == 34),
    (["--shortcut_type", "A"], lambda c, n: c.model.shortcut_type == "A"),
    (["--weight_init"], lambda c, n: any("--weight_init" in line for line in n)),
    (["--freeze_params", "1"], lambda c, n: c.finetune.freeze_params == 1),
]

SUCCESSOR_OPTIONS = [
    (["--root_path", "/d", "--result_path", "r"], lambda c, n: c.run.result_path == "/d/r"),
    (["--video_path", "jpg"], lambda c, n: c.data.video_path == "jpg"),
    (["--annotation_path", "ucf101_01.json"], lambda c, n: c.data.annotation_path == "ucf101_01.json"),
    (["--result_path", "results"], lambda c, n: c.run.result_path == "results"),
    (["--dataset", "ucf101"], lambda c, n: c.data.dataset == "ucf101"),
    (["--dataset", "mit"], lambda c, n: c.data.dataset == "mit"),
    (["--n_classes", "101"], lambda c, n: c.model.n_classes == 101),
    (["--pretrain_path", "r3d18_K_200ep.pth", "--n_pretrain_classes", "700"],
     lambda c, n: c.finetune.pretrained == "r3d18_K_200ep.pth" and c.finetune.n_pretrain_classes == 700),
    (["--ft_begin_module", "layer4"], lambda c, n: c.finetune.ft_begin_module == "layer4"),
    (["--sample_size", "112"], lambda c, n: c.data.sample_size == 112),
    (["--sample_duration", "16"], lambda c, n: c.data.sample_duration == 16),
    (["--sample_t_stride", "2"], lambda c, n: c.data.sample_t_stride == 2),
    (["--train_crop", "corner"], lambda c, n: c.data.train_crop == "corner"),
    (["--train_crop", "center"], lambda c, n: c.data.train_crop == "center"),
    (["--train_crop_min_scale", "0.5"], lambda c, n: c.data.train_crop_min_scale == 0.5),
    (["--train_crop_min_ratio", "0.8"], lambda c, n: c.data.train_crop_min_ratio == 0.8),
    (["--no_hflip"], lambda c, n: not c.data.hflip),
    (["--colorjitter"], lambda c, n: c.data.colorjitter),
    (["--train_t_crop", "center"], lambda c, n: c.data.train_t_crop == "center"),
    (["--learning_rate", "0.01"], lambda c, n: c.optim.learning_rate == 0.01),
    (["--momentum", "0.8"], lambda c, n: c.optim.momentum == 0.8),
    (["--dampening", "0.1"], lambda c, n: c.optim.dampening == 0.1),
    (["--weight_decay", "1e-5"], lambda c, n: c.optim.weight_decay == 1e-5),
    (["--mean_dataset", "activitynet"], lambda c, n: c.data.input_norm == ACTIVITYNET),
    (["--no_mean_norm"], lambda c, n: c.data.input_norm.mean == (0.0, 0.0, 0.0)),
    (["--no_std_norm"], lambda c, n: c.data.input_norm.std == (1.0, 1.0, 1.0)),
    (["--value_scale", "255"], lambda c, n: c.data.input_norm.value_scale == 255.0
     and math.isclose(c.data.input_norm.mean[0], 0.4345 * 255)),
    (["--nesterov"], lambda c, n: c.optim.nesterov and c.optim.dampening == 0.0),
    (["--optimizer", "sgd"], lambda c, n: c.optim.optimizer == "sgd"),
    (["--lr_scheduler", "plateau"], lambda c, n: c.optim.lr_scheduler == "plateau"),
    (["--multistep_milestones", "20", "40"], lambda c, n: c.optim.multistep_milestones == (20, 40)),
    (["--overwrite_milestones"], lambda c, n: c.optim.overwrite_milestones),
    (["--plateau_patience", "3"], lambda c, n: c.optim.plateau_patience == 3),
    (["--batch_size", "64"], lambda c, n: c.run.batch_size == 64),
    (["--inference", "--inference_batch_size", "8"], lambda c, n: c.inference.batch_size == 8),
    (["--batchnorm_sync"], lambda c, n: c.hardware.batchnorm_sync),
    (["--n_epochs", "5"], lambda c, n: c.run.n_epochs == 5),
    (["--n_val_samples", "1"], lambda c, n: c.data.n_val_samples == 1),
    (["--resume_path", "save_10.pth"], lambda c, n: c.run.resume == "save_10.pth"),
    (["--no_train"], lambda c, n: not c.run.train),
    (["--no_val"], lambda c, n: not c.run.val),
    (["--inference"], lambda c, n: c.inference.flavour == "successor" and c.inference.top_k == 5),
    (["--inference", "--inference_subset", "test"], lambda c, n: c.inference.subset == "test"),
    (["--inference", "--inference_stride", "8"], lambda c, n: c.inference.stride == 8),
    (["--inference", "--inference_crop", "nocrop"], lambda c, n: c.inference.crop == "nocrop"),
    (["--inference", "--inference_no_average"], lambda c, n: not c.inference.average),
    (["--no_cuda"], lambda c, n: c.hardware.device == "cpu"),
    (["--n_threads", "8"], lambda c, n: c.data.num_workers == 8),
    (["--checkpoint", "1"], lambda c, n: c.run.checkpoint_every == 1),
    (["--model", "densenet"], lambda c, n: c.model.model == "densenet"),
    (["--model", "resnext", "--model_depth", "101"], lambda c, n: c.model.arch == "resnext-101"),
    (["--conv1_t_size", "3"], lambda c, n: c.model.conv1_t_size == 3),
    (["--conv1_t_stride", "2"], lambda c, n: c.model.conv1_t_stride == 2),
    (["--no_max_pool"], lambda c, n: c.model.no_max_pool),
    (["--resnet_shortcut", "A"], lambda c, n: c.model.shortcut_type == "A"),
    (["--resnet_widen_factor", "0.5"], lambda c, n: c.model.widen_factor == 0.5),
    (["--wide_resnet_k", "4"], lambda c, n: c.model.k == 4),
    (["--resnext_cardinality", "16"], lambda c, n: c.model.cardinality == 16),
    (["--input_type", "flow"], lambda c, n: c.data.input_type == "flow" and c.model.n_input_channels == 2),
    (["--manual_seed", "7"], lambda c, n: c.run.manual_seed == 7),
    (["--accimage"], lambda c, n: any("--accimage" in line and "simplejpeg" in line for line in n)),
    (["--inference", "--output_topk", "3"], lambda c, n: c.inference.top_k == 3),
    (["--file_type", "hdf5"], lambda c, n: c.data.file_type == "hdf5"),
    (["--tensorboard"], lambda c, n: c.run.tensorboard),
    (["--distributed"], lambda c, n: c.hardware.n_gpus is None and c.hardware.nproc_per_node is None),
    (["--distributed", "--dist_url", "tcp://127.0.0.1:23456"], lambda c, n: any("--dist_url" in line for line in n)),
    # the successor's several machines (mpirun, one process each): --batch_size per machine
    (["--distributed", "--world_size", "2"], lambda c, n: (c.hardware.nodes, c.hardware.dist_url, c.run.batch_size) == (
        2, "tcp://127.0.0.1:23456", 256) and any("is this machine" in line for line in n)),
    (["--distributed", "--world_size", "3", "--dist_url", "tcp://node0:29500", "--batch_size", "64"],
     lambda c, n: (c.hardware.nodes, c.hardware.dist_url, c.run.batch_size) == (3, "tcp://node0:29500", 192)
     and any("global batch of 192" in line for line in n) and not any("is this machine" in line for line in n)),
    (["--world_size", "2"], lambda c, n: any("--world_size 2 is accepted and ignored" in line and "torchrun" in line
                                             for line in n)),
]


def test_torchrun_sets_the_machines_itself(monkeypatch):
    """Under torchrun the successor's --world_size is left to it: no second set of machines."""
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    config, notices = translate(["--distributed", "--world_size", "2", "--batch_size", "64"])
    assert (config.hardware.nodes, config.run.batch_size) == (1, 64)
    assert any("--distributed --world_size 2 is accepted and ignored: torchrun" in line for line in notices)


def _close(norm, mean, std, value_scale) -> bool:
    return (norm.value_scale == value_scale and all(abs(a - b) < 1e-9 for a, b in zip(norm.mean, mean))
            and all(abs(a - b) < 1e-9 for a, b in zip(norm.std, std)))


# The successor's 2018 release and 2019 `--test` spellings, still in many users' scripts.
SUCCESSOR_2018_OPTIONS = [
    (["--pretrain_path", "resnet-34-kinetics.pth", "--n_classes", "400", "--n_finetune_classes", "51"],
     lambda c, n: c.model.n_classes == 51 and c.finetune.n_pretrain_classes == 400),
    (["--ft_begin_index", "4"], lambda c, n: c.finetune.ft_begin_index == 4 and not c.finetune.ft_begin_module),
    (["--lr_patience", "4"], lambda c, n: c.optim.plateau_patience == 4),
    # 2018's own tables (0-255 units over --norm_value; Kinetics' std for both), and its
    # --mean_dataset defaulted to activitynet: its default input is the seed's, 0-255 minus that mean
    (["--norm_value", "1"], lambda c, n: c.data.input_norm == SEED),
    (["--norm_value", "255", "--std_norm"], lambda c, n: _close(
        c.data.input_norm, (114.7748 / 255, 107.7354 / 255, 99.4750 / 255), (38.7568578 / 255, 37.88248729 / 255,
                                                                             40.02898126 / 255), 1.0)),
    (["--norm_value", "255", "--std_norm", "--mean_dataset", "kinetics"], lambda c, n: _close(
        c.data.input_norm, (110.63666788 / 255, 103.16065604 / 255, 96.29023126 / 255), (38.7568578 / 255,
                                                                                         37.88248729 / 255, 40.02898126 / 255), 1.0)),
    (["--std_norm", "--no_mean_norm"], lambda c, n: _close(c.data.input_norm, (0, 0, 0), (38.7568578, 37.88248729, 40.02898126), 255.0)),
    (["--test", "--test_subset", "val", "--test_stride", "8", "--test_crop", "nocrop", "--test_no_average"],
     lambda c, n: (c.inference.flavour, c.inference.stride, c.inference.crop, c.inference.average) == ("successor", 8, "nocrop", False)),
    (["--test", "--scale_in_test", "1.0", "--crop_position_in_test", "c", "--no_softmax_in_test"],
     lambda c, n: sum("ignored" in line for line in n) == 3),
]


@pytest.mark.parametrize("argv, check", SEED_OPTIONS + SUCCESSOR_OPTIONS + SUCCESSOR_2018_OPTIONS,
                         ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_option_of_the_originals_is_accepted(argv, check, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lr.lua").write_text(SEED_LR_RESNETS)
    argv = [a.replace("{lr}", str(tmp_path / "lr.lua")) for a in argv]
    config, notices = translate(argv)
    assert check(config, notices), (argv, config, notices)


def test_a_norm_value_of_0_is_refused(tmp_path, monkeypatch):
    """2018's --norm_value divides the 0-255 inputs: 0 was taken for 1 without a word."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"--norm_value must be positive \(got 0\)"):
        translate(["--norm_value", "0"])


def test_the_tables_cover_the_option_lists():
    """Every option compat registers appears in the tests above, and nothing is left out."""
    tested = {a for argv, _ in SEED_OPTIONS + SUCCESSOR_OPTIONS + SUCCESSOR_2018_OPTIONS for a in argv if a.startswith("--")}
    registered = {flag for option in compat.OPTIONS for flag in option.flags}
    assert registered - tested == set()


def test_defaults_are_the_successors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, notices = translate([])
    assert (config.data.dataset, config.model.n_classes, config.model.arch, config.model.shortcut_type) == (
        "kinetics", 400, "resnet-18", "B")
    assert (config.optim.learning_rate, config.optim.weight_decay, config.run.batch_size) == (0.1, 1e-3, 128)
    assert (config.run.n_epochs, config.run.manual_seed, config.data.input_norm) == (200, 1, KINETICS)
    assert config.optim.lr_scheduler == "multistep" and config.optim.multistep_milestones == (50, 100, 150)
    assert config.hardware.n_gpus is None  # every visible GPU
    assert config.inference is None and notices == []


def test_seed_readme_commands(tmp_path, monkeypatch):
    """The seed README's commands with `th main.lua` replaced by `resnet3d main`."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    (data / "LR" / "Kinetics").mkdir(parents=True)
    (data / "LR" / "Kinetics" / "lr.lua").write_text(SEED_LR_RESNETS)
    train = (f"--root_path {data} --video_path kinetics_videos/jpg --annotation_path kinetics.json "
             "--result_path results --lr_path LR/Kinetics/lr.lua --dataset kinetics --model resnet "
             "--resnet_depth 34 --n_classes 400 --batch_size 128 --n_gpu 2 --n_threads 4 --checkpoint 5").split()
    config, _ = translate(train)
    assert config.data.video_path == str(data / "kinetics_videos/jpg")
    assert config.data.annotation_path == str(data / "kinetics.json")
    assert config.run.result_path == str(data / "results")
    assert config.optim.regimes_path == str(data / "LR/Kinetics/lr.lua")
    assert config.optim.regimes[1] == Regime(101, 150, 0.01, 0.001)
    assert (config.model.arch, config.hardware.n_gpus, config.run.checkpoint_every) == ("resnet-34", 2, 5)

    resume = (f"--root_path {data} --video_path kinetics_videos/jpg --annotation_path kinetics.json "
              "--result_path results --lr_path LR/Kinetics/lr.lua --dataset kinetics --begin_epoch 101 "
              "--batch_size 128 --n_gpu 2 --n_threads 4 --checkpoint 5").split()
    config, _ = translate(resume)
    assert config.run.begin_epoch == 101 and config.run.resume is None

    test = (f"--root_path {data} --video_path kinetics_videos/jpg --annotation_path kinetics.json "
            "--result_path results --premodel_path models/resnet.t7 --dataset kinetics "
            "--no_train --no_val --test_video --test_subset val --n_gpu 2 --n_threads 4").split()
    config, _ = translate(test)
    assert config.finetune.pretrained == str(data / "models/resnet.t7")
    assert not config.run.train and not config.run.val
    assert (config.inference.flavour, config.inference.subset, config.inference.output_name) == ("seed", "val", "val_video.json")


def test_default_lr_file_in_result_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    config, _ = translate([])
    assert config.optim.lr_scheduler == "multistep"  # no lr.lua: the successor's schedule
    (tmp_path / "results" / "lr.lua").write_text(SEED_LR_C3D)
    config, notices = translate([])
    assert config.optim.lr_scheduler == "regimes" and config.optim.regimes[0] == Regime(1, 85, 1e-3, 1e-3)
    assert any("regimes" in line for line in notices)
    _, evaluating = translate(["--no_train", "--test"])  # no learning rate to speak of
    assert not any("regimes" in line for line in evaluating)
    with pytest.raises(UserError, match="disagree"):
        translate(["--lr_scheduler", "plateau"])


def test_learning_rate_flags_beside_regimes_from_epoch_1_are_errors(tmp_path, monkeypatch):
    """The regimes set lr and weight decay every epoch: an explicit flag would be silently unused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lr.lua").write_text(SEED_LR_RESNETS)
    with pytest.raises(UserError, match=r"--learning_rate 0.05 would never be used: the regimes in lr.lua set the "
                                        r"learning rate of every epoch from epoch 1 on; drop the flag"):
        translate(["--lr_path", "lr.lua", "--learning_rate", "0.05"])
    with pytest.raises(UserError, match=r"--weight_decay 0.01 would never be used.*weight decay"):
        translate(["--lr_path", "lr.lua", "--weight_decay", "0.01"])
    with pytest.raises(UserError, match=r"--lr 0.05 would never be used: the regimes in lr.lua.*--scheduler"):
        translate(["--lr-file", "lr.lua", "--lr", "0.05"], command="train")
    (tmp_path / "run.toml").write_text('[optim]\nlr_scheduler = "regimes"\nregimes = [[1, 5, 0.1, 0.001]]\n')
    with pytest.raises(UserError, match=r"--weight-decay 0.01 would never be used: the regimes in run.toml \[optim\]"):
        translate(["--config", "run.toml", "--weight-decay", "0.01"], command="train")
    # another schedule on the command line wins over the file's regimes, and the flag holds
    config, _ = translate(["--config", "run.toml", "--lr", "0.05", "--scheduler", "cosine"], command="train")
    assert (config.optim.lr_scheduler, config.optim.learning_rate) == ("cosine", 0.05)


def test_learning_rate_flag_holds_before_the_first_regime(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lr.lua").write_text("opt.regimes = {\n  { 6, 1e8, 1e-2, 1e-3 },\n}\n")
    config, _ = translate(["--lr_path", "lr.lua", "--learning_rate", "0.05"])
    schedule = build_schedule(config.optim, n_epochs=10)
    assert [schedule.values(epoch)[0] for epoch in (1, 5, 6)] == [0.05, 0.05, 0.01]


def test_missing_lr_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no such file"):
        translate(["--root_path", str(tmp_path), "--lr_path", "LR/lr.lua"])


@pytest.mark.parametrize("argv, message", [
    (["--crop", "c", "--train_crop", "random"], "disagree"),
    (["--resnet_depth", "34", "--model_depth", "50"], "disagree"),
    (["--premodel_path", "a.t7", "--pretrain_path", "b.pth"], "give one"),
    (["--ft_begin_module", "fc", "--freeze_params", "2"], "give one"),
    (["--optimizer", "adam"], "only sgd"),
    (["--begin_epoch", "3", "--resume_path", "save_2.pth"], "Give one"),
    (["--test_video", "--inference"], "give one"),
    (["--gpu_id", "0"], "1-based"),
])
def test_contradictions_are_errors(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=message):
        translate(argv)


def test_train_builds_the_same_config_as_main(tmp_path, monkeypatch):
    """One implementation: modern flags and the originals' flags meet in the same Config."""
    monkeypatch.chdir(tmp_path)
    old, _ = translate("--video_path v --annotation_path a.json --dataset ucf101 --n_classes 101 --model resnet "
                       "--model_depth 34 --resnet_shortcut A --learning_rate 0.01 --weight_decay 1e-4 --batch_size 32 "
                       "--n_epochs 50 --multistep_milestones 20 40 --no_hflip --n_threads 2 --sample_size 128 "
                       "--mean_dataset activitynet --result_path out --no_cuda --manual_seed 3".split())
    new, _ = translate("--video-path v --annotation-path a.json --dataset ucf101 --n-classes 101 --model resnet "
                       "--model-depth 34 --shortcut-type A --lr 0.01 --weight-decay 1e-4 --batch-size 32 "
                       "--epochs 50 --milestones 20 40 --no-hflip --workers 2 --sample-size 128 "
                       "--norm activitynet --result-path out --device cpu --seed 3".split(), command="train")
    assert new.to_dict() == old.to_dict() | {"finetune": new.to_dict()["finetune"]}
    assert new.finetune.input_norm_from_checkpoint is False  # --norm was given


def test_config_file_then_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lr.lua").write_text(SEED_LR_RESNETS)
    (tmp_path / "run.toml").write_text(
        '[data]\nsample_size = 64\nhflip = false\n[model]\nmodel_depth = 10\n[optim]\n'
        'regimes = [[1, 5, 0.1, 0.001], [6, 10, 0.01, 0.001]]\nlr_scheduler = "regimes"\n[run]\nn_epochs = 10\n')
    config, _ = translate(["--config", "run.toml", "--epochs", "12", "--hflip"], command="train")
    assert (config.data.sample_size, config.data.hflip, config.model.model_depth, config.run.n_epochs) == (64, True, 10, 12)
    assert config.optim.regimes == (Regime(1, 5, 0.1, 0.001), Regime(6, 10, 0.01, 0.001))
    (tmp_path / "run.json").write_text(json.dumps({"optim": {"learning_rate": 0.5}}))
    config, _ = translate(["--config", "run.json", "--lr-file", "lr.lua"], command="train")
    assert config.optim.learning_rate == 0.5 and config.optim.lr_scheduler == "regimes"
    assert len(config.optim.regimes) == 3
    (tmp_path / "bad.toml").write_text("[data]\nsample_sise = 3\n")
    with pytest.raises(UserError, match="sample_sise.*did you mean sample_size"):
        translate(["--config", "bad.toml"], command="train")
    (tmp_path / "bad.json").write_text('{"data": {"sample_size": 3,}}')
    with pytest.raises(UserError, match="bad.json line 1"):
        translate(["--config", "bad.json"], command="train")
    (tmp_path / "twice.json").write_text('{"data": {"sample_size": 32, "sample_size": 64}}')  # JSON kept the last
    with pytest.raises(UserError, match="twice.json: 'sample_size' is given twice in one table"):
        translate(["--config", "twice.json"], command="train")


@pytest.mark.parametrize("text, message", [
    ('[data]\nsample_size = "big"\n', r"run.toml: \[data\] sample_size: expected an integer, got 'big'"),
    ('[data]\nn_scales = 2.5\n', r"\[data\] n_scales: expected an integer, got 2.5"),
    ('[data]\ntrain_crop_min_scale = "x"\n', r"\[data\] train_crop_min_scale: expected a number, got 'x'"),
    ('[data]\nhflip = "yes"\n', r"\[data\] hflip: expected true or false, got 'yes'"),
    ('[model]\nmodel_depth = "deep"\n', r"\[model\] model_depth: expected an integer, got 'deep'"),
    ('[optim]\nregimes = [[1, 5, "fast", 0.001]]\n', r"\[optim\] regimes\[0\]\.lr: expected a number, got 'fast'"),
    ('[optim]\nregimes = [{first_epoch = 1}]\n', r"\[optim\] regimes\[0\]: missing last_epoch, lr, weight_decay"),
    ('[run]\nbatch_size = "many"\n', r"\[run\] batch_size: expected an integer, got 'many'"),
    ('[hardware]\nn_gpus = "all"\n', r"\[hardware\] n_gpus: expected an integer, got 'all'"),
    ('[inference]\ntop_k = true\n', r"\[inference\] top_k: expected an integer, got True"),
    # names and choices a typo would turn into an error only at the model's or the schedule's start
    ('[model]\nmodel = "resnt"\n', r"run.toml: \[model\] model: expected one of resnet, .*, got 'resnt'"),
    ('[model]\nshortcut_type = "D"\n', r"\[model\] shortcut_type: expected one of A, B, C, got 'D'"),
    ('[optim]\nlr_scheduler = "cosin"\n', r"\[optim\] lr_scheduler: expected one of multistep, .*, got 'cosin'"),
    # a key written as its flag is named ('milestones' suggested overwrite_milestones); a section too
    ('[optim]\nmilestones = [2, 3]\n', r"milestones in \[optim\] \(did you mean multistep_milestones\?\)"),
    ('[optim]\nlr = 0.1\n', r"lr in \[optim\] \(did you mean learning_rate\?\); known: (?!.*explicit_optim)"),
    ('[runn]\nn_epochs = 2\n', r"unknown section \[runn\] \(did you mean \[run\]\?\)"),
])
def test_config_file_values_of_the_wrong_type_name_section_and_key(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text(text)
    with pytest.raises(UserError, match=message):
        translate(["--config", "run.toml"], command="train")


NORM = "[data.input_norm]\n"


@pytest.mark.parametrize("text, message", [
    (NORM + "mean = 0.5\nstd = [1, 1, 1]\n", r"input_norm.mean: expected a list of 3 numbers, got 0.5$"),
    (NORM + "mean = [0.4, 0.4]\nstd = [1, 1, 1]\n", r"input_norm.mean: expected a list of 3 numbers, got \[0.4, 0.4\]"),
    (NORM + "mean = [[0.4, 0.4, 0.4]]\nstd = [1, 1, 1]\n", r"input_norm.mean: expected a list of 3 numbers"),
    (NORM + "mean = [true, 0.4, 0.4]\nstd = [1, 1, 1]\n", r"input_norm.mean\[0\]: expected a number, got True"),
    (NORM + 'mean = [0.4, 0.4, 0.4]\nstd = "x"\n', r"input_norm.std: expected a list of 3 numbers, got 'x'"),
    (NORM + "mean = [0.4, 0.4, 0.4]\nstd = [0, 1, 1]\n",
     r"input_norm.std: expected 3 numbers above 0 \(each channel is divided by its std\), got \[0, 1, 1\]"),
    (NORM + "mean = [0.4, 0.4, 0.4]\nstd = [0.2, -0.2, 0.2]\n", r"input_norm.std: expected 3 numbers above 0"),
    (NORM + "mean = [nan, 0.4, 0.4]\nstd = [1, 1, 1]\n", r"input_norm.mean: expected finite numbers, got \[nan"),
    (NORM + "mean = [0.4, 0.4, 0.4]\nstd = [1, 1, 1]\nvalue_scale = 0\n",
     r"input_norm.value_scale: expected a number above 0 \(1 for mean and std in 0-1 units, 255 for 0-255\)"),
    (NORM + 'mean = [0.4, 0.4, 0.4]\nstd = [1, 1, 1]\nvalue_scale = "x"\n', r"input_norm.value_scale: expected a number"),
    (NORM + "mean = [0.4, 0.4, 0.4]\n", r"\[data\] input_norm: missing std \(give mean, std; optional: value_scale\)"),
    (NORM + "mean = [0.4, 0.4, 0.4]\nstd = [1, 1, 1]\nmeans = 1\n", r"unknown setting\(s\) means in \[data\] input_norm"),
    ("[data]\ninput_norm = 0.5\n", r"\[data\] input_norm: expected a table of settings, got 0.5"),
    ("[data]\njitter_strength = [0.4, 0.4]\n", r"\[data\] jitter_strength: expected a list of 4 numbers"),
])
def test_input_norm_of_the_wrong_shape_names_the_key(tmp_path, monkeypatch, text, message):
    """Each was a traceback (TypeError, KeyError, ValueError) or, for std 0, a run of nan losses."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text(text)
    with pytest.raises(UserError, match=r"^run.toml: .*" + message):
        translate(["--config", "run.toml"], command="train")


def test_input_norm_from_a_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text(NORM + "mean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 1]\n")
    config, _ = translate(["--config", "run.toml"], command="train")
    assert config.data.input_norm == InputNorm(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 1.0), value_scale=1.0)
    assert config.finetune.input_norm_from_checkpoint is False


@pytest.mark.parametrize("text, message", [
    ('[hardware]\ndevice = "tpu"\n', r"\[hardware\] device: expected one of auto, cuda, cpu, got 'tpu'"),
    ('[hardware]\ndevice = "cuda:1"\n',
     r"\[hardware\] device: .*, got 'cuda:1' \(for a particular GPU write device = \"cuda\" and gpu_id = N"),
    ('[hardware]\ndist_backend = "mpi"\n', r"\[hardware\] dist_backend: expected one of auto, nccl, gloo, got 'mpi'"),
    ('[run]\nprecision = "fp8"\n', r"\[run\] precision: expected one of auto, bf16, fp16, fp32, got 'fp8'"),
    ('[inference]\ncrop = "three"\n', r"\[inference\] crop: expected one of center, nocrop, got 'three' \(three crops"),
    ('[inference]\nn_crops = 2\n', r"\[inference\] n_crops: expected one of 1, 3, got 2"),
    ('[inference]\nflavour = "original"\n', r"\[inference\] flavour: expected one of successor, seed"),
])
def test_config_file_values_outside_their_choices_are_refused(tmp_path, monkeypatch, text, message):
    """A device "tpu" ran on the CPU without a word (and "cuda:1" on GPU 0); the [inference]
    values were refused only after training."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text(text)
    with pytest.raises(UserError, match=r"^run.toml: " + message):
        translate(["--config", "run.toml"], command="train")
    with pytest.raises(SystemExit):  # the flag offers the same choices
        translate(["--device", "tpu"], command="train")


def test_several_machines_from_a_config_file(tmp_path, monkeypatch):
    """resnet3d train's way to the successor's machines: [hardware] nodes and dist_url, under
    mpirun or srun; its batch_size stays the global batch."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text('[hardware]\nnodes = 2\ndist_url = "tcp://node0:29500"\n[run]\nbatch_size = 64\n')
    config, _ = translate(["--config", "run.toml"], command="train")
    assert (config.hardware.nodes, config.hardware.dist_url, config.run.batch_size) == (2, "tcp://node0:29500", 64)
    config, _ = translate(["--config", "run.toml", "--nodes", "4", "--dist-url", "env://"], command="train")
    assert (config.hardware.nodes, config.hardware.dist_url, config.run.batch_size) == (4, "env://", 64)


def test_json_null_where_a_setting_has_no_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"run": {"n_epochs": None}, "finetune": {"pretrained": None}}))
    with pytest.raises(UserError, match=r"run.json: \[run\] n_epochs: expected an integer, got null; leave the key out"):
        translate(["--config", "run.json"], command="train")
    (tmp_path / "run.json").write_text(json.dumps({"finetune": {"pretrained": None}}))  # None means none here
    assert translate(["--config", "run.json"], command="train")[0].finetune.pretrained is None


@pytest.mark.parametrize("section", ["data", "model", "finetune", "optim", "run", "hardware", "inference"])
def test_unknown_config_keys_name_the_files_section(tmp_path, monkeypatch, section):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text(f"[{section}]\nsample_sise = 3\n")
    with pytest.raises(UserError, match=rf"run.toml: unknown setting\(s\) sample_sise in \[{section}\][ ;]") as caught:
        translate(["--config", "run.toml"], command="train")
    assert "Config]" not in str(caught.value)


def test_config_round_trips_through_json():
    config = Config(data=DataConfig(dataset="ucf101", hflip=False))
    plain = json.loads(json.dumps(config.to_dict()))
    assert Config.from_dict(plain) == config


# -- the seed's lr.lua --------------------------------------------------------------------------


def test_lr_lua_files_of_the_seed(tmp_path):
    path = tmp_path / "lr.lua"
    path.write_text(SEED_LR_RESNETS)
    assert parse_lr_lua(path) == [Regime(1, 100, 0.1, 1e-3), Regime(101, 150, 0.01, 1e-3),
                                  Regime(151, 100000000, 1e-3, 1e-3)]
    path.write_text(SEED_LR_C3D)
    assert [r.lr for r in parse_lr_lua(path)] == [1e-3, 1e-4, 1e-5]


def test_lr_lua_comments_and_lua_syntax(tmp_path):
    path = tmp_path / "lr.lua"
    path.write_text("--[[ a block\ncomment {1, 2} ]]\nregimes = { -- rows\n {1; 10; 0x1p0 and 0; 0},\n}\n")
    with pytest.raises(UserError, match="line 4"):
        parse_lr_lua(path)
    path.write_text("--[[ a block\ncomment {1, 2} ]]\nopt.regimes = { -- rows\n {1; 10; .5; 0}, -- x\n"
                    " {11, math.huge, 5e-2, 1e-4}\n}\nprint('done -- not a comment')\n")
    rows = parse_lr_lua(path)
    assert rows[0] == Regime(1, 10, 0.5, 0.0) and rows[1].first_epoch == 11 and rows[1].last_epoch > 10**9


@pytest.mark.parametrize("text, line, message", [
    ("opt.regimes = {\n  {1, 100, 0.1},\n}\n", 2, "4 numbers"),
    ("opt.regimes = {\n  {1, 100, 0.1, 0.001},\n  {101, 150, lr, 0.001},\n}\n", 3, "expected a number"),
    ("opt.regimes = {\n  {1, 100, 0.1, 0.001},\n  {10, 5, 0.1, 0.001},\n}\n", 3, "before first_epoch"),
    ("opt.regimes = {\n-- comment\n  {1, 100, 0.1, 0.001},\n", 4, "not closed"),
    ("opt.regimes = {\n  {1.5, 100, 0.1, 0.001},\n}\n", 2, "whole number"),
    ("opt.regimes = {\n  1, 100, 0.1, 0.001,\n}\n", 2, "expected a row"),
    ("opt.regimes = {\n  {1, 100, -0.1, 0.001},\n}\n", 2, ">= 0"),
])
def test_lr_lua_errors_name_the_line(tmp_path, text, line, message):
    path = tmp_path / "lr.lua"
    path.write_text(text)
    with pytest.raises(UserError, match=rf"lr\.lua line {line}: .*{message}"):
        parse_lr_lua(path)


def test_lr_lua_without_a_table(tmp_path):
    path = tmp_path / "lr.lua"
    path.write_text("-- opt.regimes = {}\nopt.learning_rate = 0.1\n")
    with pytest.raises(UserError, match="no 'opt.regimes"):
        parse_lr_lua(path)


# -- schedules ------------------------------------------------------------------------------------


def _schedule(n_epochs=200, **optim):
    from dataclasses import replace

    return build_schedule(replace(Config(data=DataConfig()).optim, **optim), n_epochs)


def test_regimes_follow_the_seed():
    rows = (Regime(1, 100, 0.1, 1e-3), Regime(101, 150, 0.01, 1e-4), Regime(151, 10**8, 0.001, 1e-5))
    schedule = _schedule(lr_scheduler="regimes", regimes=rows)
    assert schedule.values(1) == (0.1, 1e-3) and schedule.values(100) == (0.1, 1e-3)
    assert schedule.values(101) == (0.01, 1e-4) and schedule.values(200) == (0.001, 1e-5)
    # a gap keeps the last covered epoch's values; before the first row, the flags' values
    gappy = _schedule(lr_scheduler="regimes", learning_rate=0.5, weight_decay=0.0,
                      regimes=(Regime(3, 4, 0.1, 1e-3), Regime(8, 9, 0.01, 1e-3), Regime(4, 4, 0.2, 0.0)))
    assert gappy.values(1) == (0.5, 0.0)
    assert gappy.values(4) == (0.2, 0.0)  # the last matching row wins
    assert gappy.values(6) == (0.2, 0.0) and gappy.values(10) == (0.01, 1e-3)


def test_multistep_matches_the_successors_ordering():
    schedule = _schedule(lr_scheduler="multistep", learning_rate=0.1, multistep_milestones=(50, 100))
    assert math.isclose(schedule.values(49)[0], 0.1) and math.isclose(schedule.values(50)[0], 0.01)
    assert math.isclose(schedule.values(100)[0], 0.001)
    resumed = _schedule(lr_scheduler="multistep", learning_rate=0.1, multistep_milestones=(10,))
    resumed.load_state_dict(schedule.state_dict())  # the checkpoint's milestones, unless overwritten
    assert math.isclose(resumed.values(20)[0], 0.1)
    overwritten = _schedule(lr_scheduler="multistep", multistep_milestones=(10,), overwrite_milestones=True)
    overwritten.load_state_dict(schedule.state_dict())
    assert math.isclose(overwritten.values(20)[0], 0.01)


def test_plateau_reduces_after_patience():
    schedule = _schedule(lr_scheduler="plateau", learning_rate=0.1, plateau_patience=2)
    for loss in (1.0, 0.9, 0.95, 0.95):
        schedule.observe(loss)
    assert schedule.values(5)[0] == 0.1
    schedule.observe(0.95)  # third bad epoch > patience 2
    assert math.isclose(schedule.values(6)[0], 0.01)
    copy = _schedule(lr_scheduler="plateau", learning_rate=0.1, plateau_patience=2)
    copy.load_state_dict(schedule.state_dict())
    assert copy.values(7) == schedule.values(7)


def test_cosine_with_warmup():
    schedule = _schedule(lr_scheduler="cosine", learning_rate=1.0, warmup_epochs=2, min_lr=0.0)
    assert schedule.values(1)[0] < 0.05 and math.isclose(schedule.values(2)[0], 0.5)
    assert math.isclose(schedule.values(3)[0], 1.0)
    assert schedule.values(101)[0] < schedule.values(50)[0] < 1.0
    assert schedule.values(200, 1.0)[0] < 1e-6


def test_main_takes_the_cosine_floor_and_warm_up_as_train_does(tmp_path, monkeypatch):
    """docs/training.md gives --lr_scheduler cosine a warm-up and a floor (--min-lr) with either command."""
    monkeypatch.chdir(tmp_path)
    config, _ = translate(["--lr_scheduler", "cosine", "--lr-warmup-epochs", "2", "--min-lr", "0.001"])
    trained, _ = translate(["--scheduler", "cosine", "--warmup-epochs", "2", "--min-lr", "0.001"], "train")
    assert (config.optim.warmup_epochs, config.optim.min_lr) == (trained.optim.warmup_epochs, trained.optim.min_lr) == (2.0, 0.001)
    assert {"warmup_epochs", "min_lr"} <= set(config.optim.explicit_optim)  # a continued run keeps what was given
    assert translate(["--lr_scheduler", "cosine"])[0].optim.min_lr == 0.0


# -- resnet3d's own additions: flag spellings, worker defaults, --mean/--std, recognition in train


MODERN_COMMANDS = ("train", "test", "classify", "evaluate")


@pytest.mark.parametrize("command", MODERN_COMMANDS)
def test_modern_commands_accept_kebab_and_underscore_spellings(command):
    """Every multi-word long option of the modern commands has both spellings, on one destination."""
    parser = cli.build_parser(command)
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        for option in longs:
            body = option[2:]
            if "-" not in body and "_" not in body:
                continue
            for spelling in ("--" + body.replace("_", "-"), "--" + body.replace("-", "_")):
                assert spelling in action.option_strings, f"resnet3d {command}: {option} has no {spelling}"


def test_test_command_reads_kebab_flags():
    args = cli.build_parser("test").parse_args(
        "--weights w.pth --video-path jpg --annotation-path a.json --result-path out --sample-t-stride 2".split())
    assert (args.video_path, args.annotation_path, args.result_path, args.sample_t_stride) == ("jpg", "a.json", "out", 2)
    args = cli.build_parser("test").parse_args("--weights w.pth --video_path jpg --annotation_path a.json".split())
    assert args.video_path == "jpg" and not hasattr(args, "dataset")  # unset: the checkpoint's, else the default


@pytest.mark.parametrize("cores, expected", [({0}, 1), ({0, 1}, 2), ({0, 1, 2, 3}, 3), (set(range(16)), 15),
                                            (set(range(64)), 16)])
def test_worker_defaults_follow_the_usable_cores(cores, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: cores, raising=False)
    assert translate([])[0].data.num_workers == expected
    assert translate([], command="train")[0].data.num_workers == expected
    assert cli.build_parser("test").parse_args("--weights w --video-path v --annotation-path a".split()).n_threads == expected
    assert DataConfig().num_workers == expected  # the library default too
    from resnet3d.bench import test as bench_test

    bench = argparse.ArgumentParser()
    bench_test.add_arguments(bench)
    assert bench.parse_args([]).n_threads == expected
    # explicit values are kept as given
    assert translate(["--n_threads", "6"])[0].data.num_workers == 6
    assert translate(["--workers", "6"], command="train")[0].data.num_workers == 6
    assert translate(["--workers", "0"], command="train")[0].data.num_workers == 0


@pytest.mark.parametrize("command", ["main", "test"])
def test_worker_help_states_the_rule_for_machines_of_one_or_two_cores(command, capsys):
    """On 1 or 2 cores the default is every core, not cores - 1: the help says so, as the docs do."""
    with pytest.raises(SystemExit):
        cli.build_parser(command).parse_args(["--help"])
    assert "all of 1 or 2" in " ".join(capsys.readouterr().out.split())


def _stats_flags():
    from resnet3d.prepare.stats import StatsResult

    line = StatsResult(mean=(0.41, 0.42, 0.43), std=(0.21, 0.22, 0.23), frames=1, videos=1, pixels=1).flags()
    assert line.startswith("flags: ")
    return line[len("flags: "):].split()


@pytest.mark.parametrize("command", ["main", "train"])
def test_mean_std_flags_as_prepare_stats_prints_them(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, _ = translate(_stats_flags(), command=command)
    norm = config.data.input_norm
    assert (norm.mean, norm.std, norm.value_scale) == ((0.41, 0.42, 0.43), (0.21, 0.22, 0.23), 1.0)
    assert config.finetune.input_norm_from_checkpoint is False
    scale = ["--value_scale", "255"] if command == "main" else ["--value-scale", "255"]
    norm = translate(_stats_flags() + scale, command=command)[0].data.input_norm
    assert norm.value_scale == 255.0 and math.isclose(norm.mean[0], 0.41 * 255) and math.isclose(norm.std[2], 0.23 * 255)


@pytest.mark.parametrize("command, argv, message", [
    ("main", ["--mean", "0.4", "0.4", "0.4"], "go together"),
    ("main", ["--mean", "0.4", "0.4", "0.4", "--std", "0.2", "0.2", "0.2", "--mean_dataset", "kinetics"], "give one"),
    ("main", ["--mean", "114", "107", "99", "--std", "1", "1", "1"], "0-1 units"),
    ("train", ["--std", "0.2", "0.2", "0.2"], "go together"),
    ("train", ["--mean", "0.4", "0.4", "0.4", "--std", "0.2", "0.2", "0.2", "--norm", "kinetics"], "give one"),
    ("train", ["--mean", "0.4", "0.4", "0.4", "--std", "0", "0.2", "0.2"], "> 0"),
])
def test_mean_std_mistakes_are_errors(command, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=message):
        translate(argv, command=command)


def test_train_recognition_step_from_flags_and_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert translate([], command="train")[0].inference is None
    config, _ = translate("--inference --clips 10 --crops 3 --inference-subset test --inference-top-k 1".split(),
                          command="train")
    inference = config.inference
    assert (inference.n_clips, inference.n_crops, inference.subset, inference.top_k) == (10, 3, "test", 1)
    with pytest.raises(UserError, match="--clips.*add --inference"):
        translate(["--clips", "10"], command="train")
    (tmp_path / "run.json").write_text(json.dumps({"inference": {"n_clips": 4, "n_crops": 3}}))
    config, _ = translate(["--config", "run.json"], command="train")
    assert (config.inference.n_clips, config.inference.n_crops, config.inference.flavour) == (4, 3, "successor")
    assert translate(["--config", "run.json", "--clips", "2"], command="train")[0].inference.n_clips == 2
    assert translate(["--config", "run.json", "--no-inference"], command="train")[0].inference is None
    with pytest.raises(UserError, match="give one"):
        translate(["--config", "run.json", "--no-inference", "--crops", "1"], command="train")


@pytest.mark.parametrize("name, text", [("run.toml", "[inference]\n"), ("run.json", '{"inference": {}}')])
def test_an_empty_inference_section_turns_recognition_on(tmp_path, monkeypatch, name, text):
    """The section's header alone was dropped silently: no recognition ran. It means what
    --inference alone means; --no-inference still drops it, and other empty sections change nothing."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(text)
    assert translate(["--config", name], command="train")[0].inference == InferenceConfig()
    assert translate(["--config", name, "--inference-top-k", "1"], command="train")[0].inference.top_k == 1
    assert translate(["--config", name, "--no-inference"], command="train")[0].inference is None
    (tmp_path / "other.toml").write_text("[data]\n[run]\n")
    assert translate(["--config", "other.toml"], command="train")[0] == translate([], command="train")[0]
    (tmp_path / "off.json").write_text('{"inference": null}')  # an opts.json of a run without recognition
    assert translate(["--config", "off.json"], command="train")[0].inference is None


def test_clip_size_comes_from_an_evaluated_checkpoint_unless_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    finetune = translate([])[0].finetune
    assert finetune.sample_size_from_checkpoint and finetune.sample_duration_from_checkpoint
    finetune = translate(["--sample_size", "64"])[0].finetune
    assert not finetune.sample_size_from_checkpoint and finetune.sample_duration_from_checkpoint
    finetune = translate(["--sample-duration", "8"], command="train")[0].finetune
    assert finetune.sample_size_from_checkpoint and not finetune.sample_duration_from_checkpoint
    (tmp_path / "run.json").write_text(json.dumps({"data": {"sample_size": 64}}))
    finetune = translate(["--config", "run.json"], command="train")[0].finetune
    assert not finetune.sample_size_from_checkpoint and finetune.sample_duration_from_checkpoint


@pytest.mark.parametrize("command", ["main", "train"])
def test_decode_mode_flags(command, tmp_path, monkeypatch):
    """--decode-tolerance and --fast-decode/--no-fast-decode (underscores too) reach DataConfig;
    without them the fast defaults hold, and a tolerance outside [0.5, 1] is refused."""
    monkeypatch.chdir(tmp_path)
    default = translate([], command=command)[0].data
    assert (default.decoder, default.decode_tolerance, default.fast_decode) == ("auto", 0.9, True)
    exact = translate(["--decode-tolerance", "1.0", "--no-fast-decode", "--decoder", "pil"], command=command)[0].data
    assert (exact.decoder, exact.decode_tolerance, exact.fast_decode) == ("pil", 1.0, False)
    spelled = translate(["--decode_tolerance", "0.8", "--fast_decode"], command=command)[0].data
    assert (spelled.decode_tolerance, spelled.fast_decode) == (0.8, True)
    assert translate(["--no_fast_decode"], command=command)[0].data.fast_decode is False
    with pytest.raises(UserError, match="decode_tolerance"):
        translate(["--decode-tolerance", "0.3"], command=command)
    with pytest.raises(SystemExit):
        translate(["--fast-decode", "--no-fast-decode"], command=command)


def test_train_decode_flags_override_the_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"data": {"decode_tolerance": 1.0, "fast_decode": False}}))
    from_file = translate(["--config", "run.json"], command="train")[0].data
    assert (from_file.decode_tolerance, from_file.fast_decode) == (1.0, False)
    flags = translate(["--config", "run.json", "--fast-decode", "--decode-tolerance", "0.9"], command="train")[0].data
    assert (flags.decode_tolerance, flags.fast_decode) == (0.9, True)


@pytest.mark.parametrize("flag", ["--workers", "--n-threads", "--n_threads"])
def test_train_and_test_take_both_worker_spellings(flag):
    """`train` spelled it --workers and `test` --n-threads; both now take either (and the
    originals' --n_threads)."""
    config, _ = translate([flag, "3"], command="train")
    assert config.data.num_workers == 3
    args = cli.build_parser("test").parse_args(["--weights", "w.pth", "--video-path", "v", "--annotation-path", "a",
                                                flag, "3"])
    assert args.n_threads == 3


def test_an_opts_json_with_its_used_record_reads_back_as_a_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, _ = translate(["--epochs", "7", "--device", "cuda"], command="train")
    opts = {**config.to_dict(), "used": {"device": "cpu", "processes": 1, "precision": "fp32", "channels_last": False}}
    (tmp_path / "opts.json").write_text(json.dumps(opts))
    again, _ = translate(["--config", "opts.json"], command="train")
    assert again.run.n_epochs == 7 and again.hardware.device == "cuda"
    assert Config.from_dict(opts) == Config.from_dict(config.to_dict())  # the record is left out


def test_a_config_file_of_another_format_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text("data:\n  sample_size: 112\n")
    with pytest.raises(UserError, match=r"run.yaml: config files are TOML \(.toml\) or JSON \(.json\)"):
        translate(["--config", "run.yaml"], command="train")


def test_the_optimisation_settings_given_are_recorded_for_a_continued_run(tmp_path, monkeypatch):
    """A continued run takes the settings not given from its checkpoint: each command records
    which were given (flags, a config file, an lr.lua, whose rows set the rate and weight decay)."""
    monkeypatch.chdir(tmp_path)
    config, _ = translate("--video_path v --annotation_path a.json --learning_rate 0.01 --nesterov".split())
    assert config.optim.explicit_optim == ("learning_rate", "nesterov")
    config, _ = translate("--video_path v --annotation_path a.json".split())
    assert config.optim.explicit_optim == ()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "lr.lua").write_text(SEED_LR_RESNETS)
    config, _ = translate("--video_path v --annotation_path a.json --momentum 0.5".split())
    assert config.optim.explicit_optim == ("learning_rate", "lr_scheduler", "momentum", "regimes", "weight_decay")
    (tmp_path / "run.toml").write_text("[optim]\nmomentum = 0.8\n")
    config, _ = translate(["--config", "run.toml", "--lr", "0.2"], command="train")
    assert config.optim.explicit_optim == ("learning_rate", "momentum")
