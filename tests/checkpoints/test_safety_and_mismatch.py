"""Refusing files that need arbitrary unpickling, and explaining checkpoints that do not fit."""
from __future__ import annotations

import pickle
import re
import warnings

import pytest
import torch

from resnet3d.checkpoints import build_model_from_checkpoint, load_checkpoint, load_weights
from resnet3d.errors import UserError
from resnet3d.models import create_model


class CreatesAFileWhenUnpickled:
    """A payload as an attacker would write it: unpickling calls open(target, 'w')."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path, writer):
    target = tmp_path / "pwned"
    path = tmp_path / "save_200.pth"
    payload = {"epoch": 200, "arch": "resnet-18", "state_dict": {"fc.bias": torch.zeros(2)}, "opt": CreatesAFileWhenUnpickled(target)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(payload, handle)

    with pytest.raises(UserError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert str(path) in message and "never unpickles arbitrary code" in message
    assert "open" in message  # names what it refused
    assert "If you trust the file, convert it yourself" in message
    assert not target.exists()

    # Control: an unsafe load of the same file would have run the payload.
    if writer == "torch.save":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(path, weights_only=False)
    else:
        with open(path, "rb") as handle:
            pickle.load(handle)
    assert target.exists()


def test_damaged_and_missing_files_are_named(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_checkpoint(tmp_path / "absent.pth")
    with pytest.raises(UserError, match=r"is a folder: pass a checkpoint file in it \(e.g. .*model_best.pth\)"):
        load_checkpoint(tmp_path)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UserError, match="broken.pth: not a readable PyTorch checkpoint"):
        load_checkpoint(broken)
    torch.save({"epoch": 3, "losses": [1.0, 2.0]}, broken)
    with pytest.raises(UserError, match="found no weights.*epoch, losses"):
        load_checkpoint(broken)


class CallsGetpid:
    """A harmless call into a module torch blocks outright (os), which torch words differently."""

    def __reduce__(self):
        import os

        return (os.getpid, ())


def test_a_call_into_a_blocked_module_is_named(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": CallsGetpid()}, path)
    with pytest.raises(UserError, match=r"it stores a Python object of type (posix|nt)\.getpid"):
        load_checkpoint(path)


@pytest.mark.parametrize("content, reason", [
    (b"", "it is empty (0 bytes)"),
    (b"hello, I am a text file\n", "neither a torch.save file nor a pickle (it begins with the bytes 68 65 6c 6c)"),
    (bytes(range(200, 256)) * 20, "neither a torch.save file nor a pickle"),
])
def test_files_that_are_no_checkpoint_at_all_say_so(tmp_path, content, reason):
    """Not "refused: could run code, convert it with weights_only=False" (unsafe advice for a
    file that is no pickle), and no KeyError traceback from the unpickler."""
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(UserError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path}: not a PyTorch checkpoint") and reason in message
    assert "weights_only=False" not in message


@pytest.mark.parametrize("name", ["model.pth", "model.t7"])
def test_a_file_of_zeros_is_called_that_not_a_damaged_torch7_file(tmp_path, name):
    """Zeros read as Torch7 are one nil object and junk; the user needs to hear "copy it again"."""
    path = tmp_path / name
    path.write_bytes(bytes(3 << 20))
    with pytest.raises(UserError, match=r"all its 3145728 bytes are zero .*copy the checkpoint again"):
        load_checkpoint(path)


@pytest.mark.parametrize("legacy", [False, True])
def test_a_truncated_checkpoint_is_damaged_not_unsafe(tmp_path, legacy):
    whole = tmp_path / "whole.pth"
    if legacy:  # a plain pickle: the stream breaks off
        with open(whole, "wb") as handle:
            pickle.dump({"epoch": 3, "losses": list(range(100))}, handle, protocol=2)
    else:
        torch.save({"state_dict": {"fc.weight": torch.zeros(3, 4)}}, whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[:40])
    with pytest.raises(UserError) as error:
        load_checkpoint(cut)
    message = str(error.value)
    assert "not a readable PyTorch checkpoint (damaged or truncated" in message
    assert "weights_only=False" not in message


def _expanded(model):
    return {k: torch.zeros(()).expand(v.shape) if v.dim() else torch.zeros((), dtype=v.dtype) for k, v in model.state_dict().items()}


def _meta(*args, **kwargs):
    with torch.device("meta"):
        return create_model(*args, **kwargs)


def test_mismatch_table_names_the_class_count_flag():
    checkpoint = _expanded(_meta("resnet", 18, n_classes=700))
    with pytest.raises(UserError) as error:
        load_weights(_meta("resnet", 18, n_classes=400), checkpoint, source="r3d18_K_200ep.pth")
    message = str(error.value)
    assert message.startswith("r3d18_K_200ep.pth does not fit resnet-18 (400 classes, shortcut B): 2 tensors differ")
    assert re.search(r"\n  fc\.weight +\[700, 512\] +\[400, 512\]\n", message), message
    assert re.search(r"\n  fc\.bias +\[700\] +\[400\]\n", message), message
    assert "--n_classes 700" in message and "--n_pretrain_classes 700" in message
    assert "size mismatch" not in message


@pytest.mark.parametrize(
    "checkpoint_args, model_args, flag",
    [
        (("resnet", 50), ("resnet", 18), "--model_depth 50"),
        (("resnet", 18, {"shortcut_type": "A"}), ("resnet", 18), "--resnet_shortcut A"),
        (("preresnet", 18), ("resnet", 18), "--model preresnet"),
        (("resnext", 101, {"cardinality": 16}), ("resnext", 101), "--resnext_cardinality 16"),
        (("resnet", 18, {"conv1_t_size": 3}), ("resnet", 18), "--conv1_t_size 3"),
        (("wideresnet", 50, {"stem_width": 64}), ("wideresnet", 50), "stem_width=64"),
    ],
    ids=["depth", "shortcut", "family", "cardinality", "conv1_t_size", "wrn-2018-stem"],
)
def test_mismatch_says_which_flag_fixes_it(checkpoint_args, model_args, flag):
    def build(args):
        options = args[2] if len(args) > 2 else {}
        return _meta(args[0], args[1], n_classes=400, **options)

    with pytest.raises(UserError) as error:
        load_weights(build(model_args), _expanded(build(checkpoint_args)))
    message = str(error.value)
    assert "name" in message and "checkpoint" in message and "model" in message  # the table header
    assert flag in message, message


def test_non_strict_loading_skips_names_but_not_shapes(tmp_path):
    model = create_model("resnet", 10, n_classes=5)
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    missing, unexpected = load_weights(create_model("resnet", 10, n_classes=9), partial, strict=False)
    assert missing == ["fc.weight", "fc.bias"] and unexpected == []
    with pytest.raises(UserError, match="fc.weight"):
        load_weights(create_model("resnet", 10, n_classes=9), model.state_dict(), strict=False)


def test_an_override_the_weights_contradict_gets_the_table(tmp_path):
    path = tmp_path / "save_10.pth"
    torch.save({"epoch": 10, "arch": "resnet-10", "state_dict": create_model("resnet", 10, n_classes=5).state_dict()}, path)
    with pytest.raises(UserError, match=r"save_10.pth does not fit resnet-10 \(5 classes, shortcut A\)[\s\S]*--resnet_shortcut B"):
        build_model_from_checkpoint(path, shortcut_type="A")


def test_every_suggested_flag_is_one_the_command_takes():
    """The mismatch table's fixes are typed as shown: the successor's spellings into `main` and
    `train`, test's own into `test` and `classify`."""
    from resnet3d.checkpoints.mismatch import SUCCESSOR_FLAGS
    from resnet3d.cli import build_parser
    from resnet3d.engine.predict_model import FLAG_SPELLING

    required = {"main": [], "train": [],
                "test": ["--weights", "w.pth", "--video-path", "v", "--annotation-path", "a.json"],
                "classify": ["--model", "w.pth"]}
    values = {"model": "resnet", "shortcut_type": "A", "widen_factor": "0.5"}
    for command, spelling in (("main", SUCCESSOR_FLAGS), ("train", SUCCESSOR_FLAGS), ("test", FLAG_SPELLING),
                              ("classify", FLAG_SPELLING)):
        parser = build_parser(command)
        for key, template in spelling.items():
            if not template.startswith("--"):
                continue  # not a flag (stem_width=...)
            typed = template.format(values.get(key, "3")).split()
            args, unknown = parser.parse_known_args(required[command] + typed)
            assert not unknown, f"resnet3d {command} does not take {' '.join(typed)}"
    # main's switches without a train flag name the config key too
    from resnet3d.checkpoints.mismatch import fixing_flags

    assert fixing_flags({"model": "c3d", "batch_norm": True}, {"model": "c3d", "batch_norm": False}) == [
        "--batch_norm ([model] batch_norm = true in a train config)"]
    # and a command that only evaluates is not told about --n_pretrain_classes
    checkpoint = _expanded(_meta("resnet", 10, n_classes=3))
    with pytest.raises(UserError) as error:
        load_weights(_meta("resnet", 10, n_classes=4), checkpoint, spelling=FLAG_SPELLING, finetune=False)
    assert "fix: --n-classes 3, or leave it out" in str(error.value) and "pretrain" not in str(error.value)
