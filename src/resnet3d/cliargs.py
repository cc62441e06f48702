"""Flag conventions shared by every subcommand.

- The original programs' flags keep their exact spelling (``--sample_duration``).
- Flags new to resnet3d are kebab-case (``--short-side``) and are also accepted with underscores
  (``--short_side``); ``add_flag`` registers both spellings under one destination.
- Switches come in pairs (``--hflip`` / ``--no-hflip``) through ``add_switch``.
"""
from __future__ import annotations

import argparse
from typing import Any


def _with_underscore_aliases(names: tuple[str, ...]) -> list[str]:
    spelled: list[str] = []
    for name in names:
        spelled.append(name)
        if name.startswith("--") and "-" in name[2:]:
            alias = "--" + name[2:].replace("-", "_")
            if alias not in spelled:
                spelled.append(alias)
    return spelled


def add_flag(parser: argparse._ActionsContainer, *names: str, **kwargs: Any) -> argparse.Action:
    """``parser.add_argument`` that also accepts the underscore spelling of kebab-case flags."""
    if "dest" not in kwargs:
        long_names = [n for n in names if n.startswith("--")]
        if long_names:
            kwargs["dest"] = long_names[0][2:].replace("-", "_")
    return parser.add_argument(*_with_underscore_aliases(names), **kwargs)


def add_switch(
    parser: argparse._ActionsContainer, name: str, default: Any, help: str = ""
) -> argparse.Action:
    """A ``--name`` / ``--no-name`` pair (each also with underscores).

    ``default`` is True, False, or ``argparse.SUPPRESS``: then neither flag given leaves no
    attribute, so that a config file's or a checkpoint's setting can apply instead."""
    assert name.startswith("--")
    bare = name[2:]
    on = _with_underscore_aliases((name,))
    off = _with_underscore_aliases((f"--no-{bare}",))
    dest = bare.replace("-", "_")
    group = parser.add_mutually_exclusive_group()
    if help != argparse.SUPPRESS and off[0] not in help:  # (the off spelling has no line of its own in --help)
        help = f"{help}; {off[0]} turns it off" if help else f"(off: {off[0]})"
    action = group.add_argument(*on, dest=dest, action="store_true", default=default, help=help)
    group.add_argument(*off, dest=dest, action="store_false", default=default, help=argparse.SUPPRESS)
    return action


def show_value(value: Any) -> str:
    """A flag's value as it is typed: the items of a list (``nargs``) space-separated, as in
    ``--mean 0.43 0.4 0.37``."""
    return " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each flag's default, where it says something: not for a default of None,
    False or '' (nothing given), and not a second time where the help text already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, "") or "default" in text:
            return text
        return super()._get_help_string(action) or text

