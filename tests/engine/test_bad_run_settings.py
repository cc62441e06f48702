"""Run settings that cannot work stop with one line naming the flag, not a traceback."""
import pytest
import torch

from engine_helpers import TINY, data_args
from resnet3d.cli import main
from resnet3d.models import create_model


def _main(motion_data, tmp_path, *extra):
    return main(["main", *data_args(motion_data), "--result_path", str(tmp_path / "run"), "--n_epochs", "1",
                 "--no_cuda", *TINY, *extra])


def test_batch_size_below_one(motion_data, tmp_path, capsys):
    for size in ("0", "-4"):
        assert _main(motion_data, tmp_path, "--batch_size", size) == 2
        assert f"--batch_size {size}: must be 1 or more" in capsys.readouterr().err


def test_n_pretrain_classes_that_disagree_with_the_weights(motion_data, tmp_path, capsys):
    """The old message suggested fine-tuning 'to --n_classes 5', the wrong number, not the
    run's 2 classes."""
    pretrained = create_model("resnet", 10, n_classes=7, widen_factor=0.25)
    path = tmp_path / "pretrained.pth"
    torch.save({"arch": "resnet-10", "state_dict": pretrained.state_dict()}, path)
    assert _main(motion_data, tmp_path, "--pretrain_path", str(path), "--n_pretrain_classes", "5",
                 "--batch_size", "4") == 2
    err = capsys.readouterr().err
    assert f"--n_pretrain_classes 5, but {path} has 7 classes: pass --n_pretrain_classes 7" in err
    assert "Traceback" not in err


def test_a_last_batch_of_one_tiny_clip_names_the_batch_size(motion_data, tmp_path, capsys):
    """60 training clips in batches of 59 leave one clip whose 1x1x1 feature map gives BatchNorm
    one value per channel: torch's ValueError became a one-line error with the fix. It came at
    the epoch's last batch, after a first step had logged a row that then blocked the corrected
    command; it is now found before the first step."""
    assert _main(motion_data, tmp_path, "--batch_size", "59", "--no_val") == 2
    err = capsys.readouterr().err
    assert "a training batch of one clip leaves a BatchNorm layer a single value per channel" in err
    assert "60 training clips per epoch, --batch_size 59" in err
    assert not (tmp_path / "run" / "train_batch.log").exists()
    # frozen BatchNorm normalises with its running statistics: a batch of one clip trains
    assert _main(motion_data, tmp_path / "frozen", "--batch_size", "59", "--no_val", "--freeze-bn") == 0
    # batches of one clip throughout: refused before the first step too (it was found at the first
    # step, where each process of a run with a global --batch_size 2 on two said it again)
    assert _main(motion_data, tmp_path / "ones", "--batch_size", "1", "--no_val") == 2
    err = capsys.readouterr().err
    assert "a training batch of one clip" in err and "pass a --batch_size of 2 or more" in err
    assert not (tmp_path / "ones" / "run" / "train_batch.log").exists()
    # a run that fails at its first step (its clips too small for DenseNet) leaves the logs' headers only
    assert main(["main", *data_args(motion_data), "--result_path", str(tmp_path / "run"), "--n_epochs", "1",
                 "--no_cuda", "--model", "densenet", "--model_depth", "121", "--n_classes", "2", "--sample_size",
                 "32", "--sample_duration", "4", "--n_threads", "0", "--batch_size", "2", "--no_val"]) == 2
    assert "too small for densenet-121" in capsys.readouterr().err
    assert (tmp_path / "run" / "train_batch.log").exists()
    # the corrected command runs (it was refused until --overwrite), and says what it replaced
    assert _main(motion_data, tmp_path, "--batch_size", "4", "--no_val", "--max-steps-per-epoch", "1") == 0
    out = capsys.readouterr().out
    assert "held the empty logs of a run that stopped before its first step" in out
    # logs with rows and no checkpoint are kept: refused, as before
    for checkpoint in (tmp_path / "run").glob("model_*.pth"):
        checkpoint.unlink()
    assert _main(motion_data, tmp_path, "--batch_size", "4", "--no_val") == 2
    err = capsys.readouterr().err
    assert "but no checkpoint to continue from: start over with --overwrite" in err and "--resume auto" not in err


def test_clips_too_small_for_the_model_name_the_flags(motion_data, tmp_path, capsys):
    """DenseNet's pooling windows outgrow a 4x32x32 clip: torch's RuntimeError became one line."""
    argv = ["main", *data_args(motion_data), "--result_path", str(tmp_path / "run"), "--n_epochs", "1", "--no_cuda",
            "--model", "densenet", "--model_depth", "121", "--n_classes", "2", "--sample_size", "32",
            "--sample_duration", "4", "--n_threads", "0", "--batch_size", "2", "--max_steps_per_epoch", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "clips of 4x32x32 frames are too small for densenet-121" in err and "raise --sample_duration" in err


def test_explicit_architecture_that_the_pretrained_weights_contradict(motion_data, tmp_path, capsys):
    """--resnet_depth 10 (in TINY) with resnet-18 weights was silently dropped: the run trained a
    resnet-18. Both commands, flags and a config file, stop with one line naming both."""
    pretrained = create_model("resnet", 18, n_classes=7, widen_factor=0.25)
    path = tmp_path / "r18.pth"
    torch.save({"arch": "resnet-18", "state_dict": pretrained.state_dict()}, path)
    assert _main(motion_data, tmp_path, "--pretrain_path", str(path), "--batch_size", "4") == 2
    err = capsys.readouterr().err
    assert f"{path} holds resnet-18 (7 classes, shortcut B, widen_factor 0.25), but model_depth 10 was asked for" in err
    assert "fine-tuning keeps the weights' architecture (model_depth 18)" in err
    (tmp_path / "run.toml").write_text("[model]\nmodel_depth = 18\nwiden_factor = 0.5\n")
    argv = ["train", "--config", str(tmp_path / "run.toml"), "--video-path", str(motion_data / "data/jpg"),
            "--annotation-path", str(motion_data / "data/annotation.json"), "--pretrained", str(path),
            "--result-path", str(tmp_path / "run2"), "--device", "cpu", "--workers", "0"]
    assert main(argv) == 2
    assert "but widen_factor 0.5 was asked for" in capsys.readouterr().err


def test_bf16_training_on_the_cpu_is_refused_with_the_fix(motion_data, tmp_path, capsys):
    """torch's bf16 3D convolution backward hangs or crashes on the CPU: the run stops first."""
    assert main(["train", "--video-path", str(motion_data / "data/jpg"),
                 "--annotation-path", str(motion_data / "data/annotation.json"), "--result-path", str(tmp_path / "run"),
                 "--device", "cpu", "--precision", "bf16", "--epochs", "1", "--model-depth", "10",
                 "--n-classes", "2", "--sample-size", "32", "--sample-duration", "8", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "--precision bf16 on the CPU" in err and "use --precision fp32" in err and "Traceback" not in err


@pytest.mark.parametrize("where", ["cuda", "mixed"])
def test_decode_device_cuda_without_a_gpu_names_the_flag(motion_data, tmp_path, capsys, where):
    assert _main(motion_data, tmp_path, "--batch_size", "4", "--decode-device", where) == 2
    err = capsys.readouterr().err
    assert f"--decode-device {where}" in err and "use --decode-device cpu" in err and "Traceback" not in err


@pytest.mark.parametrize("extra, warned", [([], True), (["--nproc-per-node", "2"], False)])
def test_n_gpu_on_the_cpu_says_it_runs_one_process(extra, warned, capsys):
    """The seed's `--n_gpu 2` with --no_cuda: one process, and a line naming the flag for several."""
    from resnet3d import cli, compat
    from resnet3d.engine.distributed import DistInfo
    from resnet3d.engine.process_setup import processes_per_node, resolve_device

    args = cli.build_parser("main").parse_args(["--root_path", "/data", "--n_gpu", "2", "--no_cuda", *extra])
    config, _ = compat.config_from_args(args)
    assert resolve_device(config, DistInfo()).type == "cpu"
    assert processes_per_node(config) == (2 if extra else 1)
    err = capsys.readouterr().err
    assert ("runs one process; for 2 CPU processes pass --nproc-per-node 2" in err) is warned


def test_overwrite_never_removes_the_pretrained_weights_it_starts_from(motion_data, tmp_path, capsys):
    """`--pretrain_path runft/model_best.pth --result_path runft --overwrite` loaded the weights,
    then deleted them with the earlier run's files."""
    assert _main(motion_data, tmp_path, "--batch_size", "4", "--max-steps-per-epoch", "1", "--no_val") == 0
    weights = tmp_path / "run" / "model_1.pth"
    kept = weights.read_bytes()
    assert _main(motion_data, tmp_path, "--batch_size", "4", "--max-steps-per-epoch", "1", "--no_val",
                 "--pretrain_path", str(weights), "--overwrite") == 2
    assert "--overwrite would remove" in capsys.readouterr().err and weights.read_bytes() == kept


def test_pretrained_weights_named_by_the_other_programs_epoch_name(motion_data, tmp_path, capsys):
    """`--pretrain_path run/save_1.pth` (the successor's name) stopped at 'no such file' beside our
    model_1.pth, and the reverse, where --resume_path already took the other name with a note.
    The file really read is the one --overwrite must keep and the config records."""
    import json

    assert _main(motion_data, tmp_path, "--batch_size", "4", "--max-steps-per-epoch", "1", "--no_val") == 0
    weights = tmp_path / "run" / "model_1.pth"
    kept = weights.read_bytes()
    asked = tmp_path / "run" / "save_1.pth"
    assert _main(motion_data, tmp_path, "--batch_size", "4", "--max-steps-per-epoch", "1", "--no_val",
                 "--pretrain_path", str(asked), "--overwrite") == 2
    assert f"--overwrite would remove {weights}, the pretrained weights" in capsys.readouterr().err
    assert weights.read_bytes() == kept
    one_step = ["--n_epochs", "1", "--no_cuda", *TINY, "--batch_size", "4", "--max-steps-per-epoch", "1", "--no_val"]
    assert main(["main", *data_args(motion_data), "--result_path", str(tmp_path / "tuned"), *one_step,
                 "--pretrain_path", str(asked)]) == 0
    out = capsys.readouterr().out
    assert f"{asked} does not exist: using {weights}, the same epoch's checkpoint under the other name" in out
    assert f"pretrained weights from {weights}, head kept" in out
    assert json.loads((tmp_path / "tuned" / "opts.json").read_text())["finetune"]["pretrained"] == str(weights)
    # the reverse: the seed's flag names our model_1.pth, only the successor's save_1.pth is there
    successor = tmp_path / "successor"
    successor.mkdir()
    state = torch.load(weights, weights_only=True)
    torch.save({"epoch": 1, "arch": "resnet-10", "state_dict": state["state_dict"]}, successor / "save_1.pth")
    assert main(["main", *data_args(motion_data), "--result_path", str(tmp_path / "seed"), *one_step,
                 "--premodel_path", str(successor / "model_1.pth")]) == 0
    assert f"using {successor / 'save_1.pth'}, the same epoch's" in capsys.readouterr().out
    # a config file's [finetune] pretrained is found the same way, not refused as missing
    (tmp_path / "run.toml").write_text(f"[finetune]\npretrained = '{asked}'\n")
    assert main(["train", "--config", str(tmp_path / "run.toml"), "--video-path", str(motion_data / "data/jpg"),
                 "--annotation-path", str(motion_data / "data/annotation.json"), "--result-path",
                 str(tmp_path / "from_file"), "--device", "cpu", "--workers", "0", "--epochs", "1",
                 "--batch-size", "4", "--max-steps-per-epoch", "1", "--no-val", "--sample-size", "32",
                 "--sample-duration", "8"]) == 0
    assert f"{asked} does not exist: using {weights}" in capsys.readouterr().out
    # neither name there: the file asked for is the one missing
    assert main(["main", *data_args(motion_data), "--result_path", str(tmp_path / "none"), *one_step,
                 "--pretrain_path", str(tmp_path / "run" / "save_7.pth")]) == 2
    assert f"{tmp_path / 'run' / 'save_7.pth'}: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("change", ["reordered", "added"])
def test_a_continued_run_keeps_its_classes(motion_data, tmp_path, capsys, change):
    """Continuing with an annotation whose labels are in another order trained the head on
    swapped targets without a word; one with a class more asked for the --n_classes already given."""
    import json

    assert _main(motion_data, tmp_path, "--batch_size", "4", "--max-steps-per-epoch", "1", "--no_val") == 0
    annotation = json.loads((motion_data / "data" / "annotation.json").read_text())
    labels = annotation["labels"]
    annotation["labels"] = labels[::-1] if change == "reordered" else labels + ["jump"]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(annotation))
    argv = ["main", "--video_path", str(motion_data / "data" / "jpg"), "--annotation_path", str(other),
            "--dataset", "kinetics", "--result_path", str(tmp_path / "run"), "--resume_path",
            str(tmp_path / "run" / "model_1.pth"), "--n_epochs", "2", "--no_cuda", "--batch_size", "4",
            "--max-steps-per-epoch", "1", "--no_val", "--n_threads", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    expected = "lists the same 2 classes in another order" if change == "reordered" else "new: jump"
    assert expected in err and "continues a run trained on its own classes" in err and "Traceback" not in err


def test_resume_auto_starts_over_a_run_that_stopped_before_its_first_checkpoint(motion_data, tmp_path, capsys):
    """Killed in epoch 1 (preempted, a full disk): its logs but no checkpoint. --resume auto
    said 'starting at epoch 1' and then refused, on every retry of a preemption script."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").write_text("epoch\tloss\tacc\tlr\n1\t0.7\t0.5\t0.1\n")  # epoch 1 logged, no checkpoint
    (run / "val.log").write_text("epoch\tloss\tacc\n")
    assert _main(motion_data, tmp_path, "--batch_size", "4", "--max-steps-per-epoch", "1", "--no_val",
                 "--resume", "auto") == 0
    out = capsys.readouterr().out
    assert "held the logs of a run that stopped before its first checkpoint" in out
    assert (run / "model_1.pth").exists() and (run / "train.log").read_text().count("\n1\t") == 1


@pytest.mark.parametrize("flag, value", [("--checkpoint", "0"), ("--max-steps-per-epoch", "-1")])
def test_counts_that_cannot_work_are_refused_before_training(motion_data, tmp_path, capsys, flag, value):
    """--checkpoint-every/--val-every 0 ended in a ZeroDivisionError after the first epoch;
    --max-steps-per-epoch -1 trained zero steps and saved checkpoints."""
    assert _main(motion_data, tmp_path, "--batch_size", "4", flag, value) == 2
    assert "must be" in capsys.readouterr().err
    assert not list((tmp_path / "run").glob("model_*.pth"))


def test_train_refuses_val_every_zero_and_a_scheduler_beside_an_lr_file(motion_data, tmp_path, capsys):
    (tmp_path / "lr.lua").write_text("opt.regimes = {\n  {1, 10, 1e-2, 0},\n}\n")
    base = ["train", "--video-path", str(motion_data / "data" / "jpg"), "--annotation-path",
            str(motion_data / "data" / "annotation.json"), "--model-depth", "10", "--n-classes", "2",
            "--sample-size", "32", "--sample-duration", "8", "--workers", "0", "--device", "cpu",
            "--batch-size", "4", "--epochs", "1", "--result-path", str(tmp_path / "t")]
    assert main([*base, "--val-every", "0"]) == 2
    assert "--val-every / [run] val_every: must be 1 or more" in capsys.readouterr().err
    assert main([*base, "--lr-file", str(tmp_path / "lr.lua"), "--scheduler", "cosine"]) == 2
    assert "--lr-file sets the regimes schedule and --scheduler cosine another" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--inference-subset", "test"], 'no testing videos: no entry has "subset": "testing"'),
    (["--inference-subset", "testing-set"], "--inference_subset (--test_subset with the seed's flags; [inference] "
                                            "subset in a config file): unknown subset 'testing-set'"),
    (["--inference-subset", "validation", "--inference-top-k", "0"], "[inference] top_k (--inference-top-k) must be 1 or more"),
])
def test_a_recognition_subset_without_videos_is_refused_before_training(motion_data, tmp_path, capsys, argv, message):
    """The annotation has no testing subset: recognition found that out after the last epoch
    (hours of training, then a one-line error); the run now stops before its first step."""
    (tmp_path / "run.toml").write_text("[inference]\ntop_k = 1\n")
    assert main(["train", "--config", str(tmp_path / "run.toml"), "--video-path", str(motion_data / "data" / "jpg"),
                 "--annotation-path", str(motion_data / "data" / "annotation.json"), "--model-depth", "10",
                 "--n-classes", "2", "--sample-size", "32", "--sample-duration", "8", "--workers", "0",
                 "--device", "cpu", "--batch-size", "4", "--epochs", "1", "--result-path", str(tmp_path / "run"),
                 *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "train.log").exists() and not list((tmp_path / "run").glob("model_*.pth"))


def test_a_last_batch_of_one_clip_per_process_names_each_process_share(motion_data, tmp_path):
    """2 processes split 60 clips 30 and 30, in batches of 29: each has a last batch of one clip,
    which the global numbers (60 clips, --batch_size 58) did not show."""
    from engine_helpers import resnet3d

    done = resnet3d("main", *data_args(motion_data), "--result_path", str(tmp_path / "run"), "--n_epochs", "1",
                    "--no_cuda", *TINY, "--no_val", "--batch_size", "58", "--nproc-per-node", "2", check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert ("60 training clips per epoch, --batch_size 58; each of the 2 processes takes 30 of them in batches "
            "of 29") in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_video_of_the_recognition_subset_is_reported_once(motion_data, tmp_path):
    """`main --inference` checks the recognition subset before training and reads it again after:
    its missing-video line was printed twice."""
    import json

    from engine_helpers import resnet3d

    annotation = json.loads((motion_data / "data" / "annotation.json").read_text())
    validation = [key for key, entry in annotation["database"].items() if entry["subset"] == "validation"]
    for key in validation[:4]:
        annotation["database"][key]["subset"] = "testing"
    annotation["database"]["ghost"] = {"subset": "testing", "annotations": {"label": annotation["labels"][0]}}
    (motion_data / "data" / "annotation_testing.json").write_text(json.dumps(annotation))
    args = [arg if arg != "data/annotation.json" else "data/annotation_testing.json" for arg in data_args(motion_data)]
    done = resnet3d("main", *args, "--result_path", str(tmp_path / "run"), *TINY, "--no_cuda", "--n_epochs", "1",
                    "--max-steps-per-epoch", "1", "--no_val", "--batch_size", "4", "--inference",
                    "--inference_subset", "testing")
    assert done.stderr.count("1 of 5 testing entries have no frame folder") == 1, done.stderr


def test_plateau_without_validation_says_the_rate_stays(motion_data, tmp_path, capsys):
    """ReduceLROnPlateau steps on the validation loss: under --no_val it never moved, without a word."""
    assert _main(motion_data, tmp_path, "--lr_scheduler", "plateau", "--no_val", "--batch_size", "4",
                 "--max-steps-per-epoch", "1") == 0
    assert "--no_val gives none: it stays where it starts" in capsys.readouterr().out


def test_overwrite_and_resume_together_are_refused(motion_data, tmp_path, capsys):
    """--resume auto --overwrite continued the run and ignored --overwrite without a word."""
    assert _main(motion_data, tmp_path, "--resume_path", str(tmp_path / "model_1.pth"), "--overwrite") == 2
    assert "--overwrite starts a run over" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_two_process_recognition_counts_every_processs_videos(motion_data, tmp_path):
    """The closing line counted rank 0's share only (half of the videos)."""
    import json

    from engine_helpers import resnet3d

    annotation = json.loads((motion_data / "data" / "annotation.json").read_text())
    n_validation = sum(entry["subset"] == "validation" for entry in annotation["database"].values())
    done = resnet3d("main", *data_args(motion_data), "--result_path", str(tmp_path / "run"), *TINY, "--no_cuda",
                    "--n_epochs", "1", "--max-steps-per-epoch", "1", "--no_val", "--batch_size", "4", "--inference",
                    "--nproc-per-node", "2")
    assert f"recognised {n_validation} videos of val" in done.stdout, done.stdout
    assert len(json.loads((tmp_path / "run" / "val.json").read_text())["results"]) == n_validation
