"""The default loader worker count is written in words once (``hardware.DEFAULT_WORKERS_RULE``):
the flags' help, docs/data.md and DataConfig's comment show that text, and the text says what
``default_num_workers`` does."""
from __future__ import annotations

from pathlib import Path

import pytest

from resnet3d import hardware
from resnet3d.hardware import DEFAULT_WORKERS_RULE

ROOT = Path(__file__).resolve().parents[2]


def test_the_data_docs_and_config_use_the_one_wording():
    """docs/data.md said 'usable cores - 1 (all of 1 or 2), at most 16' and DataConfig's comment
    '(all of 1 or 2; at most 16)': the same rule in their own words, which a change of the rule
    would have left behind."""
    assert f"# num_workers: {DEFAULT_WORKERS_RULE}" in (ROOT / "docs" / "data.md").read_text()
    assert "hardware.DEFAULT_WORKERS_RULE" in (ROOT / "src" / "resnet3d" / "data" / "config.py").read_text()


@pytest.mark.parametrize("cores, workers", [(1, 1), (2, 2), (3, 2), (8, 7), (17, 16), (64, 16)])
def test_the_wording_says_what_the_default_does(monkeypatch, cores, workers):
    assert DEFAULT_WORKERS_RULE == "usable cores - 1, all of 1 or 2, at most 16"
    monkeypatch.setattr(hardware, "usable_cores", lambda: cores)
    assert hardware.default_num_workers() == workers
