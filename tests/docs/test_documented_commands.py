"""Every `resnet3d ...` command shown in the README and docs/ must parse with today's flags.

This keeps the documentation true as options evolve: a renamed or removed flag fails here.
(Running the commands needs real data sets; the demo and the end-to-end tests run the pipeline.)
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from resnet3d.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _code_lines(text: str):
    """Lines of fenced code blocks, with backslash continuations joined."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            yield line.split("  #")[0].strip()


def documented_commands():
    found = []
    for document in DOCUMENTS:
        for line in _code_lines(document.read_text()):
            if "-m resnet3d " in line:
                line = "resnet3d " + line.split("-m resnet3d ", 1)[1]
            elif line.startswith(("mpirun ", "srun ")) and " resnet3d " in line:  # (a launcher's command)
                line = "resnet3d " + line.split(" resnet3d ", 1)[1]
            if not line.startswith("resnet3d ") or re.match(r"resnet3d \S+:", line) or "..." in line or "<" in line or " [-" in line:
                continue
            found.append(pytest.param(line, id=f"{document.name}:{line[:60]}"))
    return found


@pytest.mark.parametrize("line", documented_commands())
def test_documented_command_parses(line):
    argv = shlex.split(line.split(" && ")[0].split(" | ")[0].split(" > ")[0])[1:]
    command = argv[0]
    assert command in COMMANDS, f"unknown command in docs: {line}"
    parser = build_parser(command)
    parser.allow_abbrev = False  # (main takes flag prefixes; the docs spell every flag in full)
    try:
        args = parser.parse_args(argv[1:])
    except SystemExit as exit_:
        pytest.fail(f"documented command does not parse (exit {exit_.code}): {line}")
    if command == "bench":  # the benchmark's own options are parsed by its module
        import importlib

        module = importlib.import_module(f"resnet3d.bench.{args.what}")
        import argparse

        sub = argparse.ArgumentParser()
        module.add_arguments(sub)
        try:
            sub.parse_args(args.options)
        except SystemExit:
            pytest.fail(f"documented benchmark options do not parse: {line}")


def test_the_readme_shows_commands():
    assert len(documented_commands()) > 30
