"""The ``resnet3d`` command: a thin dispatcher to one module per subcommand.

Each subcommand lives in ``resnet3d.commands.<name>`` and offers two functions:
``add_arguments(parser)`` and ``run(args) -> int | None``. Only the chosen subcommand's module is
imported, so a missing optional dependency of one command never breaks another, and ``--help``
stays instant.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import os
import sys
from typing import NoReturn, Optional, Sequence

from resnet3d import __version__
from resnet3d.cliargs import DefaultsHelpFormatter
from resnet3d.errors import AlreadySaid, UserError, describe_os_error, missing_package, user_error_text

# name -> one-line summary (the module is resnet3d.commands.<name>)
COMMANDS = {
    "demo": "generate a small action data set and run the whole pipeline on it",
    "main": "train, validate and test with the original programs' command lines",
    "train": "train and validate a model (modern flags, optional config file)",
    "test": "recognise the action of every video in a data set subset",
    "evaluate": "score a results JSON against the ground truth",
    "classify": "classify or extract features from your own video files",
    "prepare": "turn raw videos and official annotation files into training data",
    "models": "list the model zoo, or inspect a checkpoint",
    "bench": "measure speed against the originals' scheme (JSON lines)",
}


# Optional packages that a flag turns on: (commands, argument, value, module, extra, the flag as
# written). Checked before the command's modules load (torch takes seconds), so a missing package
# is one line naming the extra, not an error after the model is built, or every video of a
# `test` run listed as unreadable. A setting that comes from a config file or a checkpoint is
# checked where it is used.
OPTIONAL_PACKAGES = (
    (("main", "train", "test"), "file_type", "hdf5", "h5py", "hdf5", "--file_type hdf5"),
    (("prepare",), "format", "hdf5", "h5py", "hdf5", "prepare frames --hdf5"),
    (("main", "train"), "tensorboard", True, "tensorboard", "tensorboard", "--tensorboard"),
)


def missing_optional_package(command: str, args: argparse.Namespace) -> Optional[str]:
    """The one-line error for a flag whose optional package is not installed, else None."""
    for commands, argument, value, module, extra, flag in OPTIONAL_PACKAGES:
        if command in commands and getattr(args, argument, None) == value and importlib.util.find_spec(module) is None:
            return str(missing_package(flag, module, extra))
    return None


def _module_name(command: str) -> str:
    return f"resnet3d.commands.{command}"


def _print_overview(stream=None) -> None:
    stream = sys.stdout if stream is None else stream
    width = max(len(name) for name in COMMANDS)
    lines = [
        f"usage: resnet3d <command> [options]   (resnet3d {__version__})",
        "",
        "commands:",
        *(f"  {name.ljust(width)}  {summary}" for name, summary in COMMANDS.items()),
        "",
        "Run 'resnet3d <command> --help' for a command's options.",
    ]
    print("\n".join(lines), file=stream)


class CommandParser(argparse.ArgumentParser):
    """argparse, with a command line's mistake said in two lines: the message (with the closest
    flag, for one it does not know), then where the flags are listed. argparse printed the whole
    usage first (73 lines for ``main``), burying the one line that matters."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]
        from resnet3d.engine.worker_process import another_process_of_the_machine, left_to_the_first_process

        if another_process_of_the_machine():  # the same command line, the same mistake: said once per machine
            self.exit(left_to_the_first_process(2))
        self.exit(2, f"{self.prog}: error: {message}\n(all its flags: {self.prog} --help)\n")

    def closest_flag(self, given: str) -> str:
        """' (did you mean --x?)' for a misspelt flag, else ''."""
        if not given.startswith("-"):
            return ""
        close = difflib.get_close_matches(given.split("=", 1)[0], list(self._option_string_actions), n=1, cutoff=0.7)
        return f" (did you mean {close[0]}?)" if close else ""


def build_parser(command: str) -> argparse.ArgumentParser:
    """The parser of one subcommand (also used by tests and by the docs).

    ``main`` takes unique prefixes of its flags (``--n_epoch``), as the successor's argparse did;
    the other commands, whose flags are ours, take whole names only."""
    module = importlib.import_module(_module_name(command))
    parser = CommandParser(
        prog=f"resnet3d {command}",
        description=COMMANDS[command],
        allow_abbrev=command == "main",
        formatter_class=DefaultsHelpFormatter,
    )
    module.add_arguments(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    status = _main_said(argv)
    if argv is None and {"RANK", "WORLD_SIZE", "LOCAL_RANK"} <= os.environ.keys():
        # One of torchrun's processes: its work is done, flushed and closed, and its process
        # groups destroyed. Interpreter shutdown could still abort it (SIGABRT, "terminate called
        # without an active exception": a C++ thread of torch's distributed runtime torn down
        # while joinable), and torchrun would count a finished rank as failed while the other
        # machine's launcher waited 300 s in its exit barrier (seen once in the tests). So the
        # process ends here, with the status it has, without that shutdown.
        from resnet3d.engine.worker_process import end_process

        end_process(status)
    return status


def _main_said(argv: Optional[Sequence[str]]) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # a Ctrl-C while the command's modules still load (torch takes a second or two), before
        # the command's own handling: one line, not the import's traceback
        words = list(sys.argv[1:] if argv is None else argv)[:1]
        command = f"resnet3d {words[0]}" if words and words[0] in COMMANDS else "resnet3d"
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `resnet3d --help | head`, `resnet3d evaluate ... | head`: the reader left; silence the
        # flush at interpreter exit too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _main(argv: Optional[Sequence[str]]) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        _print_overview()
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"resnet3d {__version__}")
        return 0
    command = argv[0]
    from resnet3d.engine.worker_process import another_process_of_the_machine, left_to_the_first_process

    if command not in COMMANDS:
        if another_process_of_the_machine():
            return left_to_the_first_process(2)
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"resnet3d: unknown command '{command}'.{hint}", file=sys.stderr)
        _print_overview(sys.stderr)
        return 2
    if importlib.util.find_spec(_module_name(command)) is None:
        print(f"resnet3d: the '{command}' command is not part of this build yet.", file=sys.stderr)
        return 2
    parser = build_parser(command)
    args, unknown = parser.parse_known_args(argv[1:])
    if unknown:  # what parse_args would say, and why when it is a file whose name starts with '-'
        files = [arg for arg in unknown if arg.startswith("-") and os.path.exists(arg)]
        hint = (f" ({files[0]} is a file: a name that starts with '-' goes after '--', as in "
                f"'resnet3d {command} ... -- {files[0]}', or as ./{files[0]})" if files
                else parser.closest_flag(unknown[0]))
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    missing = missing_optional_package(command, args)
    if missing:
        if another_process_of_the_machine():  # (the machine's packages: the same for its processes)
            return left_to_the_first_process(2)
        print(f"resnet3d {command}: error: {missing}", file=sys.stderr)
        return 2
    module = importlib.import_module(_module_name(command))
    try:
        status = module.run(args)
    except UserError as error:
        print(f"resnet3d {command}: error: {user_error_text(error)}", file=sys.stderr)
        return 2
    except AlreadySaid as said:  # every process of the run knows, and it is said once per machine
        return said.status
    except OSError as error:
        # A path the file system refuses (a file where a folder must go, no permission, a full
        # disk): the user's to fix, so one line. An OSError without a file name may be a bug; a
        # BrokenPipeError (it has none) goes on to main().
        if error.filename is None:
            raise
        print(f"resnet3d {command}: error: {describe_os_error(error)}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        # torch's error for a loader worker that died (the out-of-memory killer, most often): one
        # line with the cause and the fix, not the loader's traceback (training saves its steps first)
        from resnet3d.data.loader import worker_death
        from resnet3d.engine.distributed import peer_gone, peer_gone_line

        died = worker_death(error)
        if died is not None:
            print(f"resnet3d {command}: error: {died}", file=sys.stderr)
            return 1
        # a collective of a torchrun process whose peer ended: one line, not torch's traceback
        if not peer_gone(error):
            raise
        line = peer_gone_line(command)
        if line is not None:
            print(line, file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        # a command that can be continued says how in the interrupt's message
        print(f"resnet3d {command}: interrupted" + (f": {interrupt}" if str(interrupt) else ""), file=sys.stderr)
        from resnet3d.engine.signals import signal_of

        return 128 + signal_of(interrupt)  # 143 when SIGTERM stopped it
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
