"""``--compile-mode``: torch.compile for training and benchmarks, and its failures as one line.

Modes (``resnet3d.config.COMPILE_MODES``): ``none`` leaves the model as it is; ``default``,
``reduce-overhead`` (CUDA graphs), ``max-autotune`` (kernel tuning + CUDA graphs) and
``max-autotune-no-cudagraphs`` are torch.compile's own.

torch compiles lazily: the forward graph at the first call, the backward graph at the first
``backward()``. A failure there (no working C++ compiler or Triton, an unsupported operation)
surfaces as a ``torch._dynamo.exc.TorchDynamoException`` (inductor's own, from the forward or
the backward, is ``InductorError``, a subclass; torch 2.4 has no InductorError and raises a
backward's failure as inductor's bare error, a RuntimeError of ``torch._inductor.exc``) with a
trace of a hundred lines through torch's internals. ``compile_errors_explained`` turns it into
one ``UserError`` naming the mode, the first lines of torch's message and the flag that turns
compilation off.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from resnet3d.config import COMPILE_MODES, check_compile_mode
from resnet3d.errors import UserError

__all__ = ["COMPILE_MODES", "check_compile_mode", "compile_model", "compile_errors_explained",
           "is_compile_error", "reset_compiler"]

# how many lines of torch's message the one-line error keeps
MESSAGE_LINES = 3
LINE_LENGTH = 240


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """``model`` compiled in ``mode`` (the model itself for ``none``).

    ``dynamic=False``: every batch shape gets its own static graph. Training sees at most four
    shapes (full and last batch, training and validation), and static kernels are the fast ones
    (max-autotune and CUDA graphs tune for exact shapes), where torch's default would switch to
    shape-generic kernels at the second shape it meets.
    """
    mode = check_compile_mode(mode)
    if mode == "none":
        return model
    return torch.compile(model, mode=mode, dynamic=False)


def is_compile_error(error: BaseException) -> bool:
    """True for torch.compile's own failures (tracing, inductor, a C++/Triton build)."""
    try:
        from torch._dynamo.exc import TorchDynamoException
    except ImportError:  # a torch without dynamo has nothing to compile with
        return False
    if isinstance(error, TorchDynamoException):
        return True
    # A torch without torch._inductor.exc.InductorError (2.4; 2.11 and 2.13 have it) raises
    # inductor's own errors bare when the lazily compiled backward graph fails inside
    # ``backward()``: CppCompileError, InvalidCxxCompiler ... (RuntimeErrors defined in
    # torch._inductor), not wrapped in a TorchDynamoException as the forward's are.
    return type(error).__module__.startswith("torch._inductor")


def describe_compile_error(error: BaseException, mode: str, off: str = "--compile-mode none") -> str:
    """One line: the mode, the start of torch's message, and how to run without compiling."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # torch's own advice lines are about its internals; ours says what to do instead
    lines = [line for line in lines if not line.startswith(("Set TORCHDYNAMO_VERBOSE", "from user code",
                                                            "You can suppress this exception"))]
    shown = " | ".join(line[:LINE_LENGTH] for line in lines[:MESSAGE_LINES]) or type(error).__name__
    more = " ..." if len(lines) > MESSAGE_LINES else ""
    return (f"torch.compile (mode {mode}) failed: {type(error).__name__}: {shown}{more}. Run without compiling "
            f"({off}) or try another mode; TORCHDYNAMO_VERBOSE=1 shows torch's full trace")


@contextlib.contextmanager
def compile_errors_explained(mode: str, off: str = "--compile-mode none") -> Iterator[None]:
    """Inside, a torch.compile failure becomes one UserError naming ``off``, the flag (or flags)
    that turn compilation off. Other errors, out-of-memory included, pass through as they are."""
    try:
        yield
    except Exception as error:
        if mode == "none" or not is_compile_error(error):
            raise
        raise UserError(describe_compile_error(error, mode, off)) from None


def reset_compiler() -> None:
    """Forget every compiled graph (and its CUDA graphs' memory pools): between benchmark
    configurations, so that one's guards, caches and recompile limits never touch the next."""
    torch.compiler.reset()
