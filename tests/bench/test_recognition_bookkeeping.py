"""scripts/recognition_bookkeeping.py keeps running against the scoring code it measures."""
import importlib.util
from pathlib import Path


def test_the_bookkeeping_script_books_every_video():
    path = Path(__file__).resolve().parents[2] / "scripts" / "recognition_bookkeeping.py"
    spec = importlib.util.spec_from_file_location("recognition_bookkeeping", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.run(30) > 0  # it asserts that all 30 videos reached the results writer
