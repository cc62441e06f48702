"""End to end on generated motion clips: the seed's command lines train, continue exactly, stop
cleanly on SIGTERM and on a non-finite loss."""
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from resnet3d.config import Config
from resnet3d.engine.logs import read_log
from engine_helpers import TINY, data_args, resnet3d, subprocess_env

pytestmark = pytest.mark.slow

SEED_LR = """opt.regimes = {
-- start, end,    LR,   WD,
  {   1,      4,   1e-2,   1e-3, },
  {   5,    1e8,   5e-3,   1e-3, },
}
"""


def test_seed_command_line_trains(motion_data):
    """README's training command (th main.lua -> resnet3d main), tiny: loss falls, accuracy beats chance."""
    (motion_data / "LR").mkdir(exist_ok=True)
    (motion_data / "LR" / "lr.lua").write_text(SEED_LR)
    done = resnet3d("main", *data_args(motion_data), "--result_path", "results", "--lr_path", "LR/lr.lua",
                    *TINY, "--batch_size", "8", "--n_gpu", "2", "--checkpoint", "3", "--n_epochs", "8",
                    "--manual_seed", "0")
    results = motion_data / "results"
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "CUDA is not available (--n_gpus 2): running in one process on the CPU" in warnings[0]
    assert "for 2 CPU processes pass --nproc-per-node 2" in warnings[0]
    train, val = read_log(results / "train.log"), read_log(results / "val.log")
    epochs = [str(e) for e in range(1, 9)]
    assert [r["epoch"] for r in train] == epochs and [r["epoch"] for r in val] == epochs
    assert [float(r["lr"]) for r in train] == [0.01] * 4 + [0.005] * 4  # the lr.lua regimes
    losses = [float(r["loss"]) for r in train]
    assert losses[-1] < losses[0] * 0.5, losses
    assert float(train[-1]["acc"]) > 0.8, train
    assert max(float(r["acc"]) for r in val) >= 0.7, val  # 2 classes: chance is 0.5
    assert len(read_log(results / "train_batch.log")) == 8 * 8  # ceil(60 / 8) steps per epoch
    assert sorted(p.name for p in results.glob("model_*.pth")) == ["model_3.pth", "model_6.pth", "model_8.pth",
                                                                   "model_best.pth"]
    saved = torch.load(results / "model_8.pth", map_location="cpu", weights_only=True)
    assert saved["format"] == "resnet3d" and saved["epoch"] == 8 and saved["arch"] == "resnet-10"
    assert saved["class_names"] == json.loads((motion_data / "data" / "annotation.json").read_text())["labels"]
    assert saved["config"]["optim"]["lr_scheduler"] == "regimes" and saved["rng_state"]["torch"].dtype == torch.uint8
    assert saved["input_norm"]["mean"] == pytest.approx([0.4345, 0.4051, 0.3775])
    opts = json.loads((results / "opts.json").read_text())
    assert opts["model"]["model_depth"] == 10 and opts["data"]["video_path"] == str(motion_data / "data/jpg")
    # asked for 2 GPUs (the seed trains on CUDA), fell back to the CPU: both are on record
    assert (opts["hardware"]["device"], opts["hardware"]["n_gpus"]) == ("cuda", 2)
    assert opts["used"] == {"device": "cpu", "processes": 1, "precision": "fp32", "channels_last": False}
    assert Config.from_dict(opts).hardware.device == "cuda"
    assert (results / "curves.png").read_bytes()[:4] == b"\x89PNG"
    again = resnet3d("main", *data_args(motion_data), "--result_path", "results", *TINY, check=False)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "--resume auto" in again.stderr


# One schedule for the exactness tests: 2 epochs of 6 steps, deterministic.
EXACT = [*TINY, "--batch_size", "4", "--max-steps-per-epoch", "6", "--checkpoint", "1", "--learning_rate", "0.01",
         "--deterministic", "--no_cuda"]


def _logs(path):
    return [(path / name).read_text() for name in ("train.log", "train_batch.log", "val.log")]


@pytest.fixture(scope="module")
def unbroken(motion_data):
    resnet3d("main", *data_args(motion_data), "--result_path", "unbroken", *EXACT, "--n_epochs", "2")
    return motion_data / "unbroken"


def test_continue_equals_unbroken(motion_data, unbroken):
    """The seed's continue command (--begin_epoch, no model flags) reproduces an unbroken run bit for bit."""
    resnet3d("main", *data_args(motion_data), "--result_path", "split", *EXACT, "--n_epochs", "1")
    resumed = resnet3d("main", *data_args(motion_data), "--result_path", "split", "--n_classes", "2",
                       "--sample_size", "32", "--sample_duration", "8", "--n_threads", "0", "--no_hflip", "--crop", "c",
                       "--n_scales", "1", "--batch_size", "4", "--max-steps-per-epoch", "6", "--checkpoint", "1",
                       "--learning_rate", "0.01", "--deterministic", "--no_cuda", "--n_epochs", "2", "--begin_epoch", "2")
    assert "continuing from" in resumed.stdout and "model_1.pth" in resumed.stdout
    assert _logs(motion_data / "split") == _logs(unbroken)
    assert len(read_log(motion_data / "split" / "train.log")) == 2  # the log continues, not restarts


def test_a_continued_run_keeps_its_learning_rate_unless_given_again(motion_data, unbroken):
    """Neither original's continuation command names the learning rate: the rate, momentum and
    schedule of the run continued come from its checkpoint (the default 0.1 replaced the run's
    0.01 at epoch 2, silently); a rate given again is used, and the difference said."""
    continued = [*data_args(motion_data), *[arg for arg in EXACT if arg not in ("--learning_rate", "0.01")],
                 "--n_epochs", "2"]
    resnet3d("main", *data_args(motion_data), "--result_path", "kept_lr", *EXACT, "--n_epochs", "1")
    shutil.copytree(motion_data / "kept_lr", motion_data / "given_lr")
    resumed = resnet3d("main", *continued, "--result_path", "kept_lr", "--resume_path", "kept_lr/model_1.pth")
    assert "learning_rate 0.01 from" in resumed.stdout and "flags override" in resumed.stdout
    assert _logs(motion_data / "kept_lr") == _logs(unbroken)
    given = resnet3d("main", *continued, "--result_path", "given_lr", "--begin_epoch", "2", "--learning_rate", "0.05")
    assert "learning_rate 0.05 as given (the run it continues used learning_rate 0.01)" in given.stdout
    assert [row["lr"] for row in read_log(motion_data / "given_lr" / "train.log")] == ["0.01", "0.05"]


def test_resume_auto_continues_from_model_best_when_it_is_the_only_checkpoint(motion_data, unbroken):
    """With the default --checkpoint 10, a run killed before epoch 10 has only model_best.pth:
    --resume auto removed it as 'a run without a checkpoint' and started over at epoch 1."""
    killed = motion_data / "best_only"
    shutil.copytree(unbroken, killed)
    for epoch_checkpoint in killed.glob("model_[0-9]*.pth"):
        epoch_checkpoint.unlink()
    best_epoch = torch.load(killed / "model_best.pth", weights_only=True)["epoch"]
    resumed = resnet3d("main", *data_args(motion_data), "--result_path", "best_only", *EXACT, "--n_epochs", "3",
                       "--resume", "auto")
    assert "continuing from" in resumed.stdout and "model_best.pth" in resumed.stdout, resumed.stdout
    assert [row["epoch"] for row in read_log(killed / "train.log")] == [str(e) for e in range(1, 4)]
    assert len(read_log(killed / "train.log")) == 3 and best_epoch in (1, 2)


def test_continuing_from_an_older_checkpoint_sets_the_later_ones_aside(motion_data, unbroken):
    """Going back to epoch 1 of a run that reached epoch 2: its model_2.pth (and a model_best.pth
    of epoch 2) would otherwise be what --resume auto picks after this run stops; they are moved
    into a folder of their own, not deleted."""
    result_path = motion_data / "went_back"
    shutil.copytree(unbroken, result_path)
    abandoned = {name: (result_path / name).read_bytes() for name in ("model_2.pth", "model_best.pth")
                 if torch.load(result_path / name, weights_only=True)["epoch"] == 2}
    assert "model_2.pth" in abandoned
    done = resnet3d("main", *data_args(motion_data), "--result_path", "went_back", *EXACT, "--n_epochs", "2",
                    "--begin_epoch", "2")
    aside = [p for p in result_path.iterdir() if p.name.startswith("abandoned_")]
    assert len(aside) == 1 and "moved its later checkpoints" in done.stdout
    assert {p.name: p.read_bytes() for p in aside[0].iterdir()} == abandoned
    assert _logs(result_path) == _logs(unbroken)  # the continued run is the same run again
    resumed = resnet3d("main", *data_args(motion_data), "--result_path", "went_back", *EXACT, "--n_epochs", "2",
                       "--resume", "auto")
    assert "already done" in resumed.stdout and "moved" not in resumed.stdout
    fresh = resnet3d("main", *data_args(motion_data), "--result_path", "went_back", *EXACT, "--n_epochs", "1",
                     "--overwrite")
    assert f"kept {aside[0].name}" in fresh.stdout and aside[0].is_dir()  # not --overwrite's to remove


def test_a_run_refused_during_its_set_up_changes_nothing_in_its_folder(motion_data, unbroken):
    """--overwrite removed the earlier run, and going back moved the later checkpoints aside,
    before a flag found later in the set-up (bf16 on the CPU) refused the run."""
    result_path = motion_data / "refused_late"
    shutil.copytree(unbroken, result_path)
    before = sorted(p.name for p in result_path.iterdir())
    for extra in (["--overwrite"], ["--begin_epoch", "2"]):
        done = resnet3d("main", *data_args(motion_data), "--result_path", "refused_late", *EXACT, "--n_epochs", "2",
                        "--precision", "bf16", *extra, check=False)
        assert done.returncode == 2 and "bf16" in done.stderr, done.stderr
        assert sorted(p.name for p in result_path.iterdir()) == before, extra


def test_continue_without_clip_flags_keeps_the_checkpoints_clips(motion_data, unbroken):
    """The seed's continue command names no clip size: a run trained on 8x32x32 clips goes on
    with them (it went on at the default 16x112x112 without a word)."""
    resnet3d("main", *data_args(motion_data), "--result_path", "split_noclip", *EXACT, "--n_epochs", "1")
    resumed = resnet3d("main", *data_args(motion_data), "--result_path", "split_noclip", "--n_threads", "0",
                       "--no_hflip", "--crop", "c", "--n_scales", "1", "--batch_size", "4",
                       "--max-steps-per-epoch", "6", "--checkpoint", "1", "--learning_rate", "0.01", "--deterministic",
                       "--no_cuda", "--n_epochs", "2", "--begin_epoch", "2")
    assert "sample_size 32, sample_duration 8 from" in resumed.stdout
    assert _logs(motion_data / "split_noclip") == _logs(unbroken)


def test_sigterm_writes_a_checkpoint_and_resume_is_exact(motion_data, unbroken):
    result_path = motion_data / "preempted"
    command = [sys.executable, "-m", "resnet3d", "main", *data_args(motion_data), "--result_path", "preempted", *EXACT,
               "--n_epochs", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    batch_log = result_path / "train_batch.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if batch_log.is_file() and len(batch_log.read_text().splitlines()) >= 2:  # training has begun
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err
    saved = sorted(p.name for p in result_path.glob("model_*.pth"))
    assert saved, err  # a checkpoint was written before exiting
    if "model_interrupted.pth" in saved:  # the usual case: stopped mid-epoch
        state = torch.load(result_path / "model_interrupted.pth", weights_only=True)
        assert state["step_in_epoch"] >= 1
    resnet3d("main", *data_args(motion_data), "--result_path", "preempted", *EXACT, "--n_epochs", "2", "--resume", "auto")
    assert _logs(result_path) == _logs(unbroken)


def test_a_killed_checkpoint_write_leaves_nothing_behind_for_long(motion_data, unbroken):
    """A SIGKILL during a checkpoint write left its temporary file (a checkpoint's size) for good:
    neither --resume nor --overwrite removed it."""
    result_path = motion_data / "killed_write"
    shutil.copytree(unbroken, result_path)
    (result_path / ".model_3.pth.k2j4x1.tmp").write_bytes(b"half a checkpoint")
    (result_path / ".notes.tmp").write_text("the user's own")
    done = resnet3d("main", *data_args(motion_data), "--result_path", "killed_write", *EXACT, "--n_epochs", "2",
                    "--resume", "auto")
    assert "removed what a killed run left of checkpoint writes: .model_3.pth.k2j4x1.tmp" in done.stdout
    assert not (result_path / ".model_3.pth.k2j4x1.tmp").exists() and (result_path / ".notes.tmp").exists()


def test_an_interrupted_epoch_goes_on_only_in_its_own_batches(motion_data, unbroken):
    """Continuing model_interrupted.pth (stopped at step 3 in batches of 4) with --batch_size 6
    skipped 3 batches of 6: clips of the epoch went unseen, without a word."""
    result_path = motion_data / "rebatched"
    result_path.mkdir()
    for name in ("train.log", "train_batch.log", "val.log"):
        shutil.copy(unbroken / name, result_path / name)
    state = torch.load(unbroken / "model_1.pth", weights_only=True)
    state.update(step_in_epoch=3, partial_sums={"loss": 2.0, "correct": 5.0, "clips": 12.0})
    torch.save(state, result_path / "model_interrupted.pth")
    other = [arg if arg != "4" else "6" for arg in EXACT]  # --batch_size 6
    refused = resnet3d("main", *data_args(motion_data), "--result_path", "rebatched", *other, "--n_epochs", "2",
                       "--resume", "auto", check=False)
    assert refused.returncode == 2, refused.stderr
    assert "stopped in the middle of epoch 2 (step 3) with --batch_size 4 on 1 process(es)" in refused.stderr
    assert "Finish the epoch with --batch_size 4" in refused.stderr and "Traceback" not in refused.stderr


def test_nonfinite_loss_keeps_the_last_good_checkpoint(motion_data, unbroken):
    result_path = motion_data / "exploding"
    shutil.copytree(unbroken, result_path)  # (the other tests compare against the unbroken run's logs)
    good = (result_path / "model_2.pth").read_bytes()
    done = resnet3d("main", *data_args(motion_data), "--result_path", "exploding", *EXACT, "--n_epochs", "3",
                    "--resume", "auto", "--learning_rate", "1e30", check=False)
    assert done.returncode == 3, done.stderr
    assert "non-finite loss at epoch 3" in done.stderr and "model_2.pth" in done.stderr
    assert not (result_path / "model_3.pth").exists()
    assert (result_path / "model_2.pth").read_bytes() == good


def test_the_successors_save_name_finds_our_checkpoint(motion_data, unbroken):
    """The successor's README recognises with ``--resume_path results/save_200.pth``; our runs
    write model_<epoch>.pth, and that command stopped at 'no such file'."""
    done = resnet3d("main", *data_args(motion_data), "--result_path", "unbroken", "--resume_path",
                    "unbroken/save_2.pth", "--no_train", "--no_val", "--inference", "--inference_subset", "val",
                    "--n_threads", "0", "--no_cuda", "--model", "resnet", "--model_depth", "50", "--n_classes", "7")
    assert "unbroken/save_2.pth does not exist: using " in done.stdout and "model_2.pth" in done.stdout
    # the successor's resume line repeats the first run's flags: one that differs is named, not obeyed
    assert "model_depth 50, n_classes 7 given, but " in done.stdout, done.stdout
    assert "model_2.pth holds model_depth 10, n_classes 2: its architecture" in done.stdout
    assert json.loads((unbroken / "val.json").read_text())["results"]
    missing = resnet3d("main", *data_args(motion_data), "--result_path", "unbroken", "--resume_path",
                       "unbroken/save_7.pth", "--no_train", "--no_val", "--inference", "--n_threads", "0", "--no_cuda",
                       check=False)
    assert missing.returncode == 2 and "save_7.pth: no such file" in missing.stderr


def test_finetune_replaces_the_head_and_trains_from_ft_begin_module(motion_data, unbroken):
    """The successor's fine-tuning: --pretrain_path with --n_pretrain_classes, a new head for
    --n_classes, and only --ft_begin_module onwards trained."""
    pretrained = torch.load(unbroken / "model_1.pth", weights_only=True)["state_dict"]
    done = resnet3d("main", *data_args(motion_data), "--result_path", "finetuned", *EXACT, "--n_epochs", "1",
                    "--pretrain_path", "unbroken/model_1.pth", "--n_pretrain_classes", "2", "--n_classes", "3",
                    "--ft_begin_module", "layer4")
    assert "head replaced: 2 -> 3 classes" in done.stdout and "training" in done.stdout
    same = resnet3d("main", *data_args(motion_data), "--result_path", "finetuned_same", *EXACT, "--n_epochs", "1",
                    "--pretrain_path", "unbroken/model_1.pth", "--n_classes", "2", "--max-steps-per-epoch", "1",
                    "--no_val")
    assert "head kept: 2 classes, as many as the run's" in same.stdout  # it said "head replaced"
    tuned = torch.load(motion_data / "finetuned" / "model_1.pth", weights_only=True)
    assert tuned["model_config"]["n_classes"] == 3 and tuned["state_dict"]["fc.weight"].shape[0] == 3
    weights = [n for n, t in pretrained.items() if t.is_floating_point() and ("conv" in n or n.endswith(("weight", "bias")))
               and "running" not in n and not n.startswith("fc.")]
    frozen = [n for n in weights if not n.startswith("layer4.")]
    assert frozen and all(torch.equal(tuned["state_dict"][n], pretrained[n]) for n in frozen)
    assert any(not torch.equal(tuned["state_dict"][n], pretrained[n]) for n in weights if n.startswith("layer4."))


def test_finetuning_a_2018_checkpoint_feeds_its_inputs_as_it_was_trained(motion_data):
    """The 2018 README's fine-tuning command on a file saved by PyTorch < 0.4.1 (its released
    models): that release trained on 0-255 values minus the ActivityNet mean, and the run used to
    feed Kinetics mean/std on 0-1 values instead. A normalisation flag still wins."""
    from resnet3d.models import create_model
    from resnet3d.normalization import SEED

    model = create_model("resnet", 10, n_classes=4, widen_factor=0.25, shortcut_type="A")
    old = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"epoch": 200, "arch": "resnet-10", "state_dict": old}, motion_data / "resnet-10-2018.pth")
    command = ["main", *data_args(motion_data), "--n_classes", "4", "--n_finetune_classes", "2",
               "--pretrain_path", "resnet-10-2018.pth", "--ft_begin_index", "4", "--model", "resnet",
               "--model_depth", "10", "--resnet_shortcut", "A", "--resnet_widen_factor", "0.25", "--batch_size", "4",
               "--sample_size", "32", "--sample_duration", "8", "--n_threads", "0", "--no_cuda", "--n_epochs", "1",
               "--max-steps-per-epoch", "1", "--no_val"]
    done = resnet3d(*command, "--result_path", "tuned_2018")
    assert "input normalisation from the checkpoint" in done.stdout
    tuned = torch.load(motion_data / "tuned_2018" / "model_1.pth", weights_only=True)
    assert tuned["input_norm"] == SEED.to_dict()
    resnet3d(*command, "--result_path", "tuned_kinetics", "--mean_dataset", "kinetics")
    chosen = torch.load(motion_data / "tuned_kinetics" / "model_1.pth", weights_only=True)["input_norm"]
    assert chosen["value_scale"] == 1.0 and chosen["mean"] == [0.4345, 0.4051, 0.3775]


def test_continue_from_a_successor_checkpoint(motion_data):
    """A successor save_<N>.pth (2018 'module.' keys, one optimiser group per parameter as its
    fine-tuning made them) continues at epoch N+1 with its momentum; no model flags needed. Its
    rate, factor and milestones come from its optimiser and scheduler, as the successor's own
    resume takes them (the flags' defaults made a run at 0.01, milestone 2, go on at 0.1)."""
    from resnet3d.models import create_model

    model = create_model("resnet", 10, n_classes=2, widen_factor=0.25)
    optimizer = torch.optim.SGD([{"params": p} for p in model.parameters()], lr=0.01, momentum=0.8)
    model(torch.randn(2, 3, 8, 32, 32)).sum().backward()
    optimizer.step()
    torch.save({"epoch": 3, "arch": "resnet-10", "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": torch.optim.lr_scheduler.MultiStepLR(optimizer, [2], gamma=0.5).state_dict()},
               motion_data / "save_3.pth")
    done = resnet3d("main", *data_args(motion_data), "--result_path", "from_successor", "--resume_path", "save_3.pth",
                    "--n_epochs", "4", "--batch_size", "4", "--max-steps-per-epoch", "2", "--sample_size", "32",
                    "--sample_duration", "8", "--n_threads", "0", "--no_cuda")
    assert "3 epoch(s) done" in done.stdout and "does not fit" not in done.stderr
    assert "learning_rate 0.01, momentum 0.8, weight_decay 0, multistep_gamma 0.5 from" in done.stdout
    assert "schedule state is not carried over" not in done.stderr
    assert [(r["epoch"], r["lr"]) for r in read_log(motion_data / "from_successor" / "train.log")] == [("4", "0.005")]
    saved = torch.load(motion_data / "from_successor" / "model_4.pth", weights_only=True)
    assert saved["model_config"]["widen_factor"] == 0.25 and saved["arch"] == "resnet-10"
    assert len(saved["optimizer"]["param_groups"]) == 1


def test_continue_from_a_successor_plateau_checkpoint(motion_data):
    """A successor run on ReduceLROnPlateau goes on from the rate it reached, with its best loss
    and its count of epochs without progress (they restarted from the flags)."""
    from resnet3d.models import create_model

    model = create_model("resnet", 10, n_classes=2, widen_factor=0.25)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=3, factor=0.5)
    for loss in (0.25, 0.3, 0.3, 0.3, 0.3):  # 4 epochs without progress: the rate halves to 0.005
        plateau.step(loss)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.005) and plateau.num_bad_epochs == 0
    plateau.step(0.3)  # one more bad epoch
    torch.save({"epoch": 6, "arch": "resnet-10", "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": plateau.state_dict()}, motion_data / "save_6.pth")
    done = resnet3d("main", *data_args(motion_data), "--result_path", "from_plateau", "--resume_path", "save_6.pth",
                    "--n_epochs", "7", "--batch_size", "4", "--max-steps-per-epoch", "2", "--sample_size", "32",
                    "--sample_duration", "8", "--n_threads", "0", "--no_cuda", "--n_classes", "2")
    assert "learning_rate 0.005" in done.stdout and "lr_scheduler plateau" in done.stdout, done.stdout
    assert "schedule state is not carried over" not in done.stderr
    assert [row["lr"] for row in read_log(motion_data / "from_plateau" / "train.log")] == ["0.005"]
    state = torch.load(motion_data / "from_plateau" / "model_7.pth", weights_only=True)["scheduler"]
    val_loss = float(read_log(motion_data / "from_plateau" / "val.log")[0]["loss"])
    improved = val_loss < 0.25 * (1 - 1e-4)
    assert (state["best"], state["bad_epochs"]) == ((val_loss, 0) if improved else (0.25, 2)), (state, val_loss)
