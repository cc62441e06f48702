from __future__ import annotations

import json
from pathlib import Path

import pytest

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "state_dicts.json"


@pytest.fixture(scope="session")
def manifest():
    """The originals' state_dict names and shapes per configuration (../shared/reference, copied)."""
    return json.loads(MANIFEST.read_text())
