"""--compile-mode: flags and config files -> RunConfig.compile_mode, torch.compile in each mode,
and a compile failure as one line naming the flag that turns it off."""
import json

import pytest
import torch
from torch import nn

from resnet3d import cli, compat
from resnet3d.commands import train as train_command
from resnet3d.config import COMPILE_MODES, Config, resolve_compile_mode
from resnet3d.data import DataConfig, DeviceTransform
from resnet3d.engine import compilation
from resnet3d.engine.compilation import compile_errors_explained, compile_model, describe_compile_error
from resnet3d.engine.loop import StepParts, train_step
from resnet3d.errors import UserError


def train_config(*argv):
    return train_command.config_from_args(cli.build_parser("train").parse_args(list(argv)))


def main_config(*argv):
    return compat.config_from_args(cli.build_parser("main").parse_args(list(argv)))[0]


# -- flags and config files ---------------------------------------------------------------------


@pytest.mark.parametrize("argv, mode", [
    ((), "none"),
    (("--compile",), "default"),
    (("--no-compile",), "none"),
    (("--compile-mode", "max-autotune"), "max-autotune"),
    (("--compile_mode", "reduce-overhead"), "reduce-overhead"),
    (("--compile", "--compile-mode", "max-autotune-no-cudagraphs"), "max-autotune-no-cudagraphs"),
    (("--no-compile", "--compile-mode", "none"), "none"),
])
def test_compile_flags_of_train_and_main(argv, mode):
    assert train_config(*argv).run.compile_mode == mode
    assert main_config(*argv).run.compile_mode == mode


@pytest.mark.parametrize("argv", [("--no-compile", "--compile-mode", "default"), ("--compile", "--compile-mode", "none")])
def test_contradicting_compile_flags_are_an_error(argv):
    for build in (train_config, main_config):
        with pytest.raises(UserError, match="contradict"):
            build(*argv)


def test_unknown_compile_mode_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser("train").parse_args(["--compile-mode", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_resolve_compile_mode_names_the_choices():
    assert resolve_compile_mode(None, None) is None
    with pytest.raises(UserError, match="choose one of none, default, reduce-overhead"):
        resolve_compile_mode(None, "fast")


def test_an_earlier_opts_json_with_the_compile_bool_still_reads(tmp_path):
    written = Config(data=DataConfig()).to_dict()
    assert written["run"]["compile_mode"] == "none" and "compile" not in written["run"]
    old = {**written, "run": {k: v for k, v in written["run"].items() if k != "compile_mode"}}
    for value, mode in ((True, "default"), (False, "none")):
        old["run"]["compile"] = value
        assert Config.from_dict(old).run.compile_mode == mode
        path = tmp_path / "opts.json"
        path.write_text(json.dumps(old))
        assert train_config("--config", str(path)).run.compile_mode == mode


def test_config_file_compile_settings(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"run": {"compile_mode": "max-autotune"}}))
    assert train_config("--config", str(path)).run.compile_mode == "max-autotune"
    assert train_config("--config", str(path), "--compile").run.compile_mode == "max-autotune"  # already on
    assert train_config("--config", str(path), "--no-compile").run.compile_mode == "none"
    assert train_config("--config", str(path), "--compile-mode", "default").run.compile_mode == "default"
    path.write_text(json.dumps({"run": {"compile_mode": "fastest"}}))
    with pytest.raises(UserError, match=r"run\.json: \[run\] compile_mode 'fastest': choose one of"):
        train_config("--config", str(path))
    path.write_text(json.dumps({"run": {"compile": "yes"}}))
    with pytest.raises(UserError, match=r"run\.json: \[run\] compile: expected true or false"):
        train_config("--config", str(path))


# -- compile_model and its errors -----------------------------------------------------------------


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.AdaptiveAvgPool3d(1),
                         nn.Flatten(), nn.Linear(4, 3))


def tiny_parts(model: nn.Module, stepped: nn.Module) -> StepParts:
    cfg = DataConfig()
    return StepParts(model=stepped, eval_model=stepped, optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                     scaler=None, device=torch.device("cpu"), amp_dtype=None,
                     train_transform=DeviceTransform.from_config(cfg, train=True),
                     eval_transform=DeviceTransform.from_config(cfg, train=False))


def tiny_batch():
    generator = torch.Generator().manual_seed(1)
    clips = torch.randint(0, 256, (2, 4, 8, 8, 3), dtype=torch.uint8, generator=generator)  # (N, T, H, W, C)
    return clips, torch.tensor([0, 2]), {"flip": torch.tensor([True, False])}


def test_mode_none_leaves_the_model_and_unknown_modes_are_user_errors():
    model = tiny_model()
    assert compile_model(model, "none") is model
    with pytest.raises(UserError, match="--compile-mode 'turbo': choose one of " + ", ".join(COMPILE_MODES)):
        compile_model(model, "turbo")


@pytest.mark.parametrize("mode", COMPILE_MODES[1:])
def test_each_mode_reaches_torch_compile(monkeypatch, mode):
    calls = []
    monkeypatch.setattr(compilation.torch, "compile", lambda model, **kw: calls.append(kw) or model)
    compile_model(tiny_model(), mode)
    assert calls == [{"mode": mode, "dynamic": False}]


def failing_backend(gm, example_inputs):
    raise RuntimeError("cannot build the kernel: no working C++ compiler\n" + "\n".join(f"detail {i}" for i in range(80)))


def test_a_compile_failure_at_the_first_step_is_one_line_naming_the_flag(monkeypatch):
    """A real dynamo failure (the backend raises, as inductor does without a compiler)."""
    real_compile = torch.compile
    monkeypatch.setattr(compilation.torch, "compile",
                        lambda model, mode=None, dynamic=None: real_compile(model, backend=failing_backend, dynamic=dynamic))
    torch.compiler.reset()
    model = tiny_model()
    parts = tiny_parts(model, compile_model(model, "max-autotune"))
    clips, targets, augment = tiny_batch()
    with pytest.raises(UserError) as caught:
        with compile_errors_explained("max-autotune", "leave out --compile, or --compile-mode none"):
            train_step(parts, clips, targets, augment)
    torch.compiler.reset()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("torch.compile (mode max-autotune) failed: BackendCompilerFailed")
    assert "no working C++ compiler" in message and "detail 0 ..." in message and "detail 1" not in message
    assert "leave out --compile, or --compile-mode none" in message


def test_inductors_backward_failure_and_other_errors():
    """A backward graph compiled lazily fails inside ``loss.backward()`` as inductor's
    InductorError (what torch 2.13 raises there); errors that are not torch.compile's pass."""
    import torch._inductor.exc

    InductorError = getattr(torch._inductor.exc, "InductorError", None)
    if InductorError is None:  # torch 2.4 has none (2.11 and 2.13 do)
        pytest.skip(f"torch {torch.__version__} has no torch._inductor.exc.InductorError")
    with pytest.raises(UserError, match=r"InductorError: RuntimeError: ptxas failed \| line two\. Run without"):
        with compile_errors_explained("default"):
            raise InductorError(RuntimeError("ptxas failed\nline two"), None)
    for error in (RuntimeError("shape mismatch"), torch.OutOfMemoryError("CUDA out of memory")):
        with pytest.raises(type(error)):
            with compile_errors_explained("default"):
                raise error
    with pytest.raises(InductorError):  # not compiling: nothing to explain
        with compile_errors_explained("none"):
            raise InductorError(RuntimeError("x"), None)
    assert "TORCHDYNAMO_VERBOSE=1" in describe_compile_error(RuntimeError(""), "default")


def test_inductors_bare_error_is_explained_too():
    """torch 2.4 (no InductorError) raises a lazily compiled backward's failure as inductor's bare
    error, e.g. InvalidCxxCompiler, a RuntimeError of torch._inductor.exc: one line as well."""
    import torch._inductor.exc

    with pytest.raises(UserError, match=r"failed: InvalidCxxCompiler: No working C\+\+ compiler.*Run without"):
        with compile_errors_explained("default"):
            raise torch._inductor.exc.InvalidCxxCompiler()


def test_the_trainer_compiles_in_the_mode_asked_and_explains_a_failure(motion_data, tmp_path, monkeypatch):
    from resnet3d.engine import trainer

    modes = []
    real_compile = torch.compile

    def compile_failing(model, mode=None, dynamic=None):
        modes.append(mode)
        return real_compile(model, backend=failing_backend, dynamic=dynamic)

    monkeypatch.setattr(compilation.torch, "compile", compile_failing)
    torch.compiler.reset()
    config = train_config("--video-path", str(motion_data / "data/jpg"), "--annotation-path",
                          str(motion_data / "data/annotation.json"), "--dataset", "kinetics", "--model", "resnet",
                          "--model-depth", "10", "--widen-factor", "0.25", "--n-classes", "2", "--sample-size", "32",
                          "--sample-duration", "8", "--workers", "0", "--batch-size", "4", "--epochs", "1",
                          "--max-steps-per-epoch", "2", "--device", "cpu", "--result-path", str(tmp_path / "run"),
                          "--compile-mode", "reduce-overhead", "--no-curves")
    with pytest.raises(UserError, match=r"torch.compile \(mode reduce-overhead\) failed: .*no working C\+\+ compiler"
                                        r".*leave out --compile, or --compile-mode none"):
        trainer.run(config)
    torch.compiler.reset()
    assert modes == ["reduce-overhead"]
    opts = json.loads((tmp_path / "run" / "opts.json").read_text())
    assert opts["run"]["compile_mode"] == "reduce-overhead"


@pytest.mark.slow
def test_a_real_compiled_training_step_matches_the_eager_one():
    """torch.compile (inductor, C++ on the CPU) of a tiny model: one step, same loss and weights."""
    clips, targets, augment = tiny_batch()
    eager_model = tiny_model()
    eager = tiny_parts(eager_model, eager_model)
    eager_loss, eager_correct = train_step(eager, clips, targets, augment)
    compiled_model = tiny_model()
    torch.compiler.reset()
    compiled = tiny_parts(compiled_model, compile_model(compiled_model, "default"))
    with compile_errors_explained("default"):
        loss, correct = train_step(compiled, clips, targets, augment)
    torch.compiler.reset()
    assert torch.allclose(loss, eager_loss, rtol=1e-4, atol=1e-5) and int(correct) == int(eager_correct)
    for a, b in zip(compiled_model.parameters(), eager_model.parameters()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
