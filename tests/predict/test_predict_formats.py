"""Result files in both originals' exact layouts, video naming, windows and views (no model)."""
from __future__ import annotations

import json

import pytest
import torch

from resnet3d.data.sources import JpegFolderSource
from resnet3d.engine import results
from resnet3d.engine.windows import (
    ViewPlan,
    frame_size,
    read_views,
    short_side_size,
    three_crop_offsets,
    window_starts,
)


def test_seed_document_has_exactly_the_seeds_keys():
    doc = results.document("seed", {"abc": [{"label": "x", "score": 0.5}]}, {})
    assert list(doc) == ["version", "results", "external_data"]
    assert doc["version"] == "VERSION 1.3"
    assert doc["external_data"] == {"used": False, "details": "..."}
    assert doc["results"] == {"abc": [{"label": "x", "score": 0.5}]}


def test_successor_document_is_results_only_and_errors_appear_only_when_present():
    assert results.document("successor", {}, {}) == {"results": {}}
    doc = results.document("successor", {"a": []}, {"b": "b.mp4: no frames"})
    assert doc == {"results": {"a": []}, "errors": {"b": "b.mp4: no frames"}}


def test_seed_names_videos_by_youtube_id_and_keeps_clashing_keys_whole():
    keys = ["abcdefghijk_000010_000020", "v_ApplyEyeMakeup_g01_c01", "dup_000001_000011", "dup_000050_000060"]
    names = results.result_names(keys, "seed")
    assert names["abcdefghijk_000010_000020"] == "abcdefghijk"
    assert names["v_ApplyEyeMakeup_g01_c01"] == "v_ApplyEyeMakeup_g01_c01"
    # two clips of one youtube video must not overwrite each other's results
    assert names["dup_000001_000011"] == "dup_000001_000011"
    assert names["dup_000050_000060"] == "dup_000050_000060"
    assert results.result_names(keys, "successor") == {k: k for k in keys}


def test_top_k_is_sorted_and_ties_go_to_the_lower_class():
    ranked = results.top_k([0.1, 0.4, 0.4, 0.1], ["a", "b", "c", "d"], 3)
    assert [r["label"] for r in ranked] == ["b", "c", "a"]
    assert results.top_k([0.2, 0.8], ["a", "b"], 10) == [{"label": "b", "score": 0.8}, {"label": "a", "score": 0.2}]


def test_writer_rewrites_the_file_every_k_videos(tmp_path):
    path = tmp_path / "val.json"
    writer = results.ResultWriter(path, "successor", save_every=2)
    writer.add("a", [])
    assert not path.exists()
    writer.add("b", [])
    assert json.loads(path.read_text()) == {"results": {"a": [], "b": []}}
    writer.add_error("c", "c: unreadable")
    writer.add("d", [])
    assert json.loads(path.read_text())["errors"] == {"c": "c: unreadable"}


@pytest.mark.parametrize("flavour", ["seed", "successor"])
def test_the_results_file_is_what_json_dumps_gives_and_each_entry_is_encoded_once(tmp_path, monkeypatch, flavour):
    """Saving kept each result's JSON text instead of encoding the whole file every
    --save-every videos (quadratic: 55 s of saves for 20,000 videos on a 2-core box); the file is
    byte for byte json.dumps of the document, whatever was added, replaced, merged or carried over."""
    path = tmp_path / "val.json"
    earlier = {"results": {"old": [{"label": "a", "score": 0.5}]}}
    writer = results.ResultWriter(path, flavour, save_every=3, earlier=earlier, order=["b", "old", "a", "c", "d"])
    encoded = []
    real_dumps = json.dumps
    monkeypatch.setattr(results.json, "dumps", lambda obj, *a, **k: encoded.append(obj) or real_dumps(obj, *a, **k))
    writer.add("a", [{"label": "caf\u00e9 \"x\"", "score": 1e-12}])
    writer.add("b", [{"segment": [1, 17], "result": [{"label": "b", "score": float("nan")}]}])
    writer.add_error("c", "c: unreadable \u2013 gone")  # third: saved
    assert path.read_text() == real_dumps(results.document(flavour, {k: writer.results[k] for k in ("b", "old", "a")},
                                                           {"c": "c: unreadable \u2013 gone"}))
    entries_encoded = sum(1 for obj in encoded if isinstance(obj, list))
    writer.add("a", [{"label": "a2", "score": 0.25}])  # replaced: encoded again
    writer.merge({"results": {"d": []}, "errors": {"e": "e: bad"}})
    writer.save(extra={"token": "t", "complete": True})
    expected = results.document(flavour, {k: writer.results[k] for k in ("b", "old", "a", "d")},
                                {"c": "c: unreadable \u2013 gone", "e": "e: bad"})
    assert path.read_text() == real_dumps({**expected, "token": "t", "complete": True})
    assert sum(1 for obj in encoded if isinstance(obj, list)) == entries_encoded + 2  # a's new entry and d's
    assert entries_encoded == 3  # each entry once at the first save


def test_numeric_annotation_keys_are_string_ids_and_other_ids_are_refused(tmp_path):
    """ResultWriter encodes each video's key itself: an id that is not a string would make the file
    invalid JSON. Annotation keys are JSON object keys, strings even when they are numbers."""
    from resnet3d.data.annotations import load_annotation

    annotation = tmp_path / "numbers.json"
    annotation.write_text(json.dumps({"labels": ["a"], "database": {
        "123": {"subset": "validation", "annotations": {"label": "a"}},
        "7": {"subset": "validation", "annotations": {"label": "a"}}}}))
    keys = [entry.key for entry in load_annotation(str(annotation), "kinetics", "validation").entries]
    assert keys == ["123", "7"]
    path = tmp_path / "val.json"
    writer = results.ResultWriter(path, "successor", order=keys)
    for key in keys:
        writer.add(key, [{"label": "a", "score": 1.0}])
    writer.save()
    assert json.loads(path.read_text()) == {"results": {"123": [{"label": "a", "score": 1.0}],
                                                        "7": [{"label": "a", "score": 1.0}]}}
    with pytest.raises(TypeError, match="video ids are strings"):
        writer.add(123, [])


def test_existing_results_are_set_aside_not_overwritten(tmp_path):
    path = tmp_path / "val.json"
    path.write_text('{"results": {}}')
    (tmp_path / "val.1.json").write_text("older")
    moved = results.set_aside(path)
    assert moved.name == "val.2.json" and moved.read_text() == '{"results": {}}' and not path.exists()


def test_read_existing_refuses_foreign_files(tmp_path):
    path = tmp_path / "val.json"
    path.write_text("[1, 2]")
    with pytest.raises(Exception, match="no 'results' object"):
        results.read_existing(path)


@pytest.mark.parametrize("n, expected", [(20, [0, 8]), (16, [0]), (17, [0, 8]), (5, [0])])
def test_seed_windows_start_at_1_1_plus_d_while_start_le_n_minus_d(n, expected):
    # 1-based starts t = 1, 1 + d, ... while t <= n - d (test_video.lua); at least one window
    assert window_starts(n, ViewPlan(sample_duration=8, sample_size=32, scheme="seed")) == expected


def test_successor_windows_slide_to_the_end_and_even_windows_spread():
    assert window_starts(20, ViewPlan(8, 32, scheme="sliding", stride=8)) == [0, 8, 16]
    assert window_starts(20, ViewPlan(8, 32, scheme="sliding", stride=16)) == [0, 16]
    assert window_starts(20, ViewPlan(8, 32, scheme="even", n_clips=3)) == [0, 6, 12]
    assert window_starts(4, ViewPlan(8, 32, scheme="even", n_clips=2)) == [0, 0]


def test_short_side_resize_and_three_crop_offsets():
    assert short_side_size(320, 240, 112) == (112, 149)
    assert short_side_size(240, 320, 112) == (149, 112)
    assert three_crop_offsets(149, 112) == [0, 18, 37]
    assert three_crop_offsets(112, 112) == [0, 0, 0]


def _source(motion):
    video = motion.videos[0]
    return JpegFolderSource(f"{motion.jpg_path}/{video['rel_path']}")


def test_views_of_real_jpegs_centre_three_crops_and_nocrop(motion):
    source = _source(motion)
    frames = list(range(1, 21))
    size = frame_size(source, frames)
    assert size == (48, 32)
    centre, segments, bad = read_views(source, frames, [0, 16], ViewPlan(8, 32, crop="center"), None, (1, 21))
    assert centre.shape == (2, 8, 32, 32, 3) and centre.dtype == torch.uint8 and bad == 0
    # the second window runs past frame 20: loop-padded, its segment ends after the last real frame
    assert segments == [(1, 9), (17, 21)]
    three, _, _ = read_views(source, frames, [0, 16], ViewPlan(8, 32, crop="three"), size, (1, 21))
    assert three.shape == (6, 8, 32, 32, 3)
    left, middle, right = three[0].float(), three[1].float(), three[2].float()
    assert (left - right).abs().mean() > 5  # different parts of the frame
    assert (middle - centre[0].float()).abs().mean() < 2  # the middle crop is the centre crop
    whole, _, _ = read_views(source, frames, [0], ViewPlan(8, 32, crop="nocrop"), size, (1, 21))
    assert whole.shape == (1, 8, 32, 48, 3)  # short side 32, aspect kept


def test_top_k_ranks_best_first_ties_by_class_index_from_lists_or_arrays():
    import numpy as np

    from resnet3d.engine.results import top_k

    names = ["a", "b", "c", "d"]
    scores = [0.1, 0.4, 0.4, 0.1]
    want = [{"label": "b", "score": 0.4}, {"label": "c", "score": 0.4}, {"label": "a", "score": 0.1}]
    assert top_k(scores, names, 3) == top_k(np.asarray(scores), names, 3) == want
    assert [e["label"] for e in top_k(scores, names, 10)] == ["b", "c", "a", "d"]  # k beyond the classes
    assert top_k(scores, names, 0) == want[:1]  # at least one
