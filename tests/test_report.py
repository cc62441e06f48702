"""Confusion-matrix PNGs with class names in other scripts: a font that has them, or one line."""
import logging
import warnings

from PIL import Image

from resnet3d.report import font_families, plot_confusion_matrix


def _plot_quietly(names, path):
    """The warnings a user would see while the PNG is drawn (a missing glyph is a UserWarning).
    Deprecation warnings are left out: Python hides them outside __main__, and matplotlib 3.7, the
    floor, gets one from newer pyparsing releases that says nothing about the fonts."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_confusion_matrix([[2, 1], [0, 3]], names, path)
    with Image.open(path) as image:
        assert image.format == "PNG"
    return [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]


def test_a_script_the_default_font_lacks_takes_an_installed_font_that_has_it(tmp_path):
    """Circled letters are not in DejaVu Sans but are in STIX, which matplotlib ships."""
    families, missing = font_families(["Ⓐ-team", "walk"])
    assert len(families) == 2 and not families[1].lower().startswith("last resort") and missing == []
    assert _plot_quietly(["Ⓐ-team", "walk"], tmp_path / "cm.png") == []


def test_cjk_class_names_never_warn_per_glyph(tmp_path, caplog):
    """With a CJK font installed the names are drawn in it; without, one line says so (not one
    matplotlib warning per glyph), and the PNG is written either way."""
    names = ["跳舞", "走路"]
    families, missing = font_families(names)
    with caplog.at_level(logging.WARNING, logger="resnet3d.report"):
        assert _plot_quietly(names, tmp_path / "cm.png") == []
    lines = [r.getMessage() for r in caplog.records]
    if missing:
        assert len(lines) == 1 and "no installed font draws 2 of the class names (e.g. '跳舞')" in lines[0]
    else:
        assert len(families) == 2 and lines == []
