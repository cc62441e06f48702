import argparse
import os
import subprocess
import sys

import pytest

from resnet3d import cli
from resnet3d.cliargs import add_flag, add_switch


def test_overview_lists_every_command(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_unknown_command_suggests_the_closest(capsys):
    assert cli.main(["trian"]) == 2
    assert "Did you mean 'train'" in capsys.readouterr().err


def test_kebab_flags_accept_underscores():
    parser = argparse.ArgumentParser()
    add_flag(parser, "--short-side", type=int, default=240)
    assert parser.parse_args(["--short-side", "128"]).short_side == 128
    assert parser.parse_args(["--short_side", "64"]).short_side == 64
    assert parser.parse_args([]).short_side == 240


def test_switch_pairs():
    parser = argparse.ArgumentParser()
    add_switch(parser, "--hflip", default=True)
    assert parser.parse_args([]).hflip is True
    assert parser.parse_args(["--no-hflip"]).hflip is False
    assert parser.parse_args(["--no_hflip"]).hflip is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--hflip", "--no-hflip"])
    # SUPPRESS: neither given leaves no attribute (a config file's or checkpoint's setting applies)
    add_switch(parser, "--fast-decode", default=argparse.SUPPRESS)
    assert not hasattr(parser.parse_args([]), "fast_decode")
    assert parser.parse_args(["--no_fast_decode"]).fast_decode is False
    assert parser.parse_args(["--fast-decode"]).fast_decode is True


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "resnet3d", "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.startswith("resnet3d ")


TORCHRUN_RANK = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
WATCHED_SHUTDOWN = ("import atexit, sys\n"
                    "atexit.register(lambda: print('interpreter shutdown ran', file=sys.stderr))\n"
                    "from resnet3d.cli import main\n"
                    "sys.exit(main())\n")


@pytest.mark.parametrize("torchrun", [False, True], ids=["alone", "torchrun-rank"])
@pytest.mark.parametrize("argv, status", [(["--version"], 0), (["no-such-command"], 2)])
def test_a_torchrun_rank_ends_without_interpreter_shutdown(torchrun, argv, status):
    """A rank of torchrun ends right after its work, its output written and its status kept: the
    interpreter's shutdown could abort it (a thread of torch's distributed runtime torn down),
    and torchrun took a finished rank for a failed one. Alone, the process ends as usual."""
    env = {key: value for key, value in os.environ.items() if key not in TORCHRUN_RANK}
    env.update(TORCHRUN_RANK if torchrun else {})
    reader, writer = os.pipe()  # a pipe: stdout is block-buffered, so unflushed output would be lost
    done = subprocess.run([sys.executable, "-c", WATCHED_SHUTDOWN, *argv], stdout=writer, stderr=subprocess.PIPE,
                          text=True, timeout=120, env=env)
    os.close(writer)
    with os.fdopen(reader) as printed:
        stdout = printed.read()
    assert done.returncode == status
    assert ("interpreter shutdown ran" in done.stderr) is not torchrun
    assert (stdout.startswith("resnet3d ") if status == 0 else "unknown command" in done.stderr)


# `resnet3d bench loader|train|test --help` import torch: those benchmarks' modules define
# torch Dataset classes at module level and measure torch itself.
LIGHT_HELP = [[]] + [[name] for name in cli.COMMANDS] + [["bench", "prepare"], ["bench", "classify"]]  # []: `resnet3d --help`


@pytest.mark.parametrize("command", LIGHT_HELP, ids=lambda command: " ".join(command) or "overview")
def test_help_does_not_import_torch(command):
    """`--help` answers at once: no command's parser (nor `resnet3d.data.config`) imports torch, PyAV,
    PIL, matplotlib or h5py."""
    probe = (
        "import sys\n"
        "from resnet3d.cli import main\n"
        "try:\n"
        f"    main({[*command, '--help']!r})\n"
        "except SystemExit as stop:\n"
        "    assert not stop.code, stop.code\n"
        "heavy = sorted(name for name in ('torch', 'numpy', 'av', 'PIL', 'matplotlib', 'h5py') if name in sys.modules)\n"
        "print('imported:', ' '.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage: resnet3d" in done.stdout
    # numpy (0.1 s) is let pass: `prepare --help` imports it through resnet3d.prepare.extract
    assert set(done.stdout.splitlines()[-1].split()[1:]) <= {"numpy"}, done.stdout.splitlines()[-1]


def test_a_path_the_file_system_refuses_is_one_line(tmp_path, monkeypatch, capsys):
    """A result folder where a file is (or under one): the message names the path and the cause,
    no traceback. (The folder is made by the command, here as the trainer makes it.)"""
    import os

    from resnet3d.commands import models

    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    monkeypatch.setattr(models, "run", lambda args: os.makedirs(blocker / "run"))
    assert cli.main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"resnet3d models: error: {blocker / 'run'}: Not a directory")
    assert "a part of the path is a file" in err and "Traceback" not in err


def test_an_oserror_without_a_path_keeps_its_traceback(monkeypatch):
    from resnet3d.commands import models

    def fails(args):
        raise OSError("something internal")

    monkeypatch.setattr(models, "run", fails)
    with pytest.raises(OSError, match="something internal"):
        cli.main(["models"])


def test_evaluate_confusion_png_where_a_folder_is(tmp_path, capsys):
    """A folder where the PNG is to go: refused before the report, naming the flag (the write
    then failed after it; tests/test_fileio.py checks that atomic writes name the file asked for,
    not the temporary file beside it)."""
    import json

    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"labels": ["a", "b"], "database": {
        "v1": {"subset": "validation", "annotations": {"label": "a"}}}}))
    results = tmp_path / "val.json"
    results.write_text(json.dumps({"results": {"v1": [{"label": "a", "score": 1.0}]}}))
    (tmp_path / "confusion.png").mkdir()
    assert cli.main(["evaluate", str(gt), str(results), "--confusion", str(tmp_path / "confusion.png"),
                     "--overwrite"]) == 2  # (without it, the existing name is refused first)
    said = capsys.readouterr()
    assert f"--confusion {tmp_path / 'confusion.png'} is a folder: give a file's name" in said.err
    assert said.out == ""  # (no report first)


class _RefusingDataset:
    def __len__(self):
        return 2

    def __getitem__(self, index):
        from resnet3d.errors import UserError

        raise UserError("data/jpg/a/clip: no readable frame; check --video_path")


def test_a_loader_workers_user_error_is_its_one_line():
    """torch re-raises a worker's UserError with the worker's traceback inside its message; the
    CLI prints the message alone."""
    import torch.utils.data

    from resnet3d.errors import UserError, user_error_text

    with pytest.raises(UserError) as caught:
        for _ in torch.utils.data.DataLoader(_RefusingDataset(), num_workers=1):
            pass
    assert "Traceback" in str(caught.value)
    assert user_error_text(caught.value) == "data/jpg/a/clip: no readable frame; check --video_path"


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["models"], ["--help"]])
def test_output_piped_into_a_reader_that_left_is_no_traceback(argv):
    """`resnet3d models | head -1`, `resnet3d --help | head -1`: the reader closes the pipe; no
    BrokenPipeError traceback (a command's output, and the overview printed before any command)."""
    reader, writer = os.pipe()
    os.close(reader)
    done = subprocess.run([sys.executable, "-m", "resnet3d", *argv], stdout=writer, stderr=subprocess.PIPE,
                          text=True, timeout=120)
    os.close(writer)
    assert "Traceback" not in done.stderr
    assert done.returncode == 141


def test_a_config_file_value_of_the_wrong_shape_is_one_line(tmp_path, monkeypatch, capsys):
    """`mean = 0.5` under [data] input_norm was a TypeError traceback (exit 1)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text("[data.input_norm]\nmean = 0.5\nstd = [0.2, 0.2, 0.2]\n")
    assert cli.main(["train", "--config", "run.toml", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err == ("resnet3d train: error: run.toml: [data] input_norm.mean: expected a list of 3 numbers, "
                   "got 0.5\n")


def test_a_missing_relative_path_of_a_config_file_says_where_it_was_looked_for(tmp_path, monkeypatch, capsys):
    """Relative paths in a config file are relative to the working directory, as flags are: run
    from elsewhere, the message names the file, the key, both forms of the path and the rule, and
    points at the file's folder when the path is there. Checked before the run starts."""
    (tmp_path / "runs" / "data" / "jpg").mkdir(parents=True)
    (tmp_path / "runs" / "r18.toml").write_text('[data]\nvideo_path = "data/jpg"\nannotation_path = "data/a.json"\n'
                                               '[hardware]\ndevice = "cpu"\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--config", "runs/r18.toml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resnet3d train: error: runs/r18.toml: [data] video_path data/jpg: no such file or folder "
                          f"(looked for {tmp_path / 'data' / 'jpg'}); relative paths in a config file are relative "
                          f"to the working directory ({tmp_path}), not to the file's folder; there is one beside the "
                          f"config file: write {tmp_path / 'runs' / 'data' / 'jpg'}")
    assert "Traceback" not in err
    monkeypatch.chdir(tmp_path / "runs")  # from the file's folder: the next path is the one missing
    assert cli.main(["train", "--config", "r18.toml"]) == 2
    err = capsys.readouterr().err
    assert "r18.toml: [data] annotation_path data/a.json: no such file or folder" in err
    assert "there is one beside" not in err
    # a flag that replaces the path is not the file's; --print-config reads no path
    assert cli.main(["train", "--config", "r18.toml", "--annotation-path", "elsewhere.json"]) == 2
    assert "elsewhere.json" in capsys.readouterr().err
    assert cli.main(["train", "--config", "r18.toml", "--print-config"]) == 0


def test_a_config_file_path_may_start_at_the_home_folder(tmp_path, monkeypatch, capsys):
    """A config file goes through no shell: `~/data/jpg` was taken literally (a folder named ~)."""
    import json

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text('[data]\nvideo_path = "~/data/jpg"\nannotation_path = "~/a.json"\n'
                                       '[run]\nresult_path = "~/runs/r18"\nresume = "auto"\n')
    assert cli.main(["train", "--config", "run.toml", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    home = tmp_path / "home"
    assert printed["data"]["video_path"] == str(home / "data" / "jpg")
    assert printed["data"]["annotation_path"] == str(home / "a.json")
    assert (printed["run"]["result_path"], printed["run"]["resume"]) == (str(home / "runs" / "r18"), "auto")
    assert cli.main(["train", "--config", "run.toml"]) == 2  # checked as expanded
    assert f"[data] video_path {home / 'data' / 'jpg'}: no such file or folder" in capsys.readouterr().err


def test_a_misspelt_flag_is_said_in_two_lines_with_the_closest_flag(capsys):
    """argparse printed the whole usage first (73 lines for main) and no suggestion."""
    from resnet3d.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["train", "--epoch", "3"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["resnet3d train: error: unrecognized arguments: --epoch 3 (did you mean --epochs?)",
                                "(all its flags: resnet3d train --help)"]


def test_main_takes_unique_prefixes_of_its_flags_as_the_successor_did():
    """The successor's argparse took `--n_epoch 3`; our other commands take whole names only."""
    from resnet3d.cli import build_parser

    args, unknown = build_parser("main").parse_known_args(["--n_epoch", "3", "--learning_r", "0.5"])
    assert (args.n_epochs, args.learning_rate, unknown) == (3, 0.5, [])
    _, unknown = build_parser("train").parse_known_args(["--epoch", "3"])
    assert unknown == ["--epoch", "3"]


def test_a_command_line_mistake_under_torchrun_is_said_once_per_machine(monkeypatch, capsys, tmp_path):
    """torchrun gives each of its processes the same command line: a misspelt flag or command, a
    missing config file or lr.lua, was said once per process (the whole overview, for a command).
    Now by each machine's first process; the others wait for torchrun to stop them (ended at once,
    one could be the first torchrun saw end, and torchrun stopped the first process before it had
    said anything: seen in CI)."""
    from resnet3d.engine import worker_process

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    # (the quiet processes wait for torchrun to stop them once the first has said it: not here)
    monkeypatch.setattr(worker_process, "QUIET_END_WAIT_S", 0.0)
    with pytest.raises(SystemExit) as stop:  # (argparse's way out)
        cli.main(["train", "--no-such-flag"])
    assert stop.value.code == 2 and capsys.readouterr().err == ""
    assert cli.main(["trian"]) == 2 and capsys.readouterr().err == ""
    # what follows from the command line and the machine's files alike (a config file, an lr.lua)
    missing = tmp_path / "missing.toml"
    assert cli.main(["train", "--config", str(missing)]) == 2 and capsys.readouterr().err == ""
    assert cli.main(["main", "--lr_path", str(tmp_path / "lr.lua")]) == 2 and capsys.readouterr().err == ""
    monkeypatch.setenv("LOCAL_RANK", "0")  # (rank 1 on a machine of its own: it says it there)
    with pytest.raises(SystemExit):
        cli.main(["train", "--no-such-flag"])
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(missing)]) == 2
    assert f"--config {missing}: no such file" in capsys.readouterr().err
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "resnet3d",
                           "train", "--no-such-flag"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert done.returncode != 0 and done.stderr.count("unrecognized arguments: --no-such-flag") == 1, done.stderr
    assert "(SIGTERM)" in done.stderr  # (the quiet process was stopped by torchrun, not ended by itself)
