"""``resnet3d evaluate`` on hand-made ground truth and results: the successor's accuracy, every
video id form, subset aliases, and the reports."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from resnet3d import evaluation
from resnet3d.cli import main
from resnet3d.errors import UserError

LABELS = ["abseiling", "bowling", "cooking"]
# Kinetics keys (the successor's annotation): youtube id + times
VAL = {"aaaaaaaaaaa_000010_000020": "abseiling", "bbbbbbbbbbb_000000_000010": "bowling",
       "ccccccccccc_000005_000015": "cooking", "ddddddddddd_000001_000011": "cooking"}


def _gt(tmp_path, subset_word="validation"):
    database = {key: {"subset": subset_word, "annotations": {"label": label, "segment": [1, 11]}}
                for key, label in VAL.items()}
    database["eeeeeeeeeee_000000_000010"] = {"subset": "training", "annotations": {"label": "bowling"}}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"labels": LABELS, "database": database}))
    return path


def _ranked(*labels):
    return [{"label": label, "score": 1.0 - 0.1 * i} for i, label in enumerate(labels)]


# top-1: a right, b wrong (cooking first, bowling second), c right; d has no result
PREDICTIONS = {"a": _ranked("abseiling", "bowling"), "b": _ranked("cooking", "bowling"), "c": _ranked("cooking", "abseiling")}


def _results(tmp_path, form, seed_doc=False):
    ids = {"a": "aaaaaaaaaaa_000010_000020", "b": "bbbbbbbbbbb_000000_000010", "c": "ccccccccccc_000005_000015"}
    labels = {"a": "abseiling", "b": "bowling", "c": "cooking"}
    if form == "seed":  # the seed's own ids: <label>/<youtube id>
        keyed = {f"{labels[k]}/{ids[k][:11]}": v for k, v in PREDICTIONS.items()}
    elif form == "youtube":
        keyed = {ids[k][:11]: v for k, v in PREDICTIONS.items()}
    else:
        keyed = {ids[k]: v for k, v in PREDICTIONS.items()}
    doc = {"version": "VERSION 1.3", "results": keyed, "external_data": {"used": False, "details": "..."}} \
        if seed_doc else {"results": keyed}
    path = tmp_path / f"{form}.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("form", ["full", "youtube", "seed"])
def test_every_id_form_matches_and_accuracy_counts_all_subset_videos(tmp_path, form):
    gt = evaluation.load_ground_truth(str(_gt(tmp_path)), "validation")
    result = evaluation.evaluate(gt, evaluation.load_predictions(str(_results(tmp_path, form, form == "seed"))), k=2)
    assert result.n_videos == 4 and result.n_matched == 3
    assert result.accuracy(1) == pytest.approx(2 / 4)  # d has no result: a miss
    assert result.accuracy(2) == pytest.approx(3 / 4)  # b's truth is second


def test_ignore_counts_only_videos_with_a_result(tmp_path):
    gt = evaluation.load_ground_truth(str(_gt(tmp_path)), "validation")
    result = evaluation.evaluate(gt, evaluation.load_predictions(str(_results(tmp_path, "full"))), ignore=True)
    assert result.accuracy(1) == pytest.approx(2 / 3)
    # per class: abseiling 1/1, bowling 0/1, cooking 1/1 (d is ignored)
    assert [(r["class"], r["videos"], r["top1_correct"]) for r in result.per_class] == [
        ("abseiling", 1, 1), ("bowling", 1, 0), ("cooking", 1, 1)]
    assert result.mean_class_accuracy == pytest.approx(2 / 3)


def test_mean_class_accuracy_and_confusion_without_ignore(tmp_path):
    gt = evaluation.load_ground_truth(str(_gt(tmp_path)), "val")
    result = evaluation.evaluate(gt, evaluation.load_predictions(str(_results(tmp_path, "full"))))
    # abseiling 1/1, bowling 0/1, cooking 1/2 (d missed)
    assert result.mean_class_accuracy == pytest.approx((1 + 0 + 0.5) / 3)
    assert result.confusion == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]


def test_subset_aliases_and_no_silent_zero(tmp_path):
    gt_path = str(_gt(tmp_path))
    assert evaluation.load_ground_truth(gt_path, "val").subset == "validation"
    assert evaluation.load_ground_truth(gt_path, "train").subset == "training"
    with pytest.raises(UserError, match="no video of subset 'test'.*training, validation"):
        evaluation.load_ground_truth(gt_path, "test")
    # an annotation that literally says "val" is matched by its own word
    assert evaluation.load_ground_truth(str(_gt(tmp_path / "val-word", "val")), "val").subset == "val"
    # a file that says "val" (or " Validation ") is read as training reads it: --subset validation finds it
    for word in ("val", " Validation "):
        gt = evaluation.load_ground_truth(str(_gt(tmp_path / f"word-{word.strip()}", word)), "validation")
        assert gt.subset == "validation" and len(gt.labels) == 4


def test_results_that_match_nothing_are_an_error(tmp_path):
    gt = evaluation.load_ground_truth(str(_gt(tmp_path)), "training")
    with pytest.raises(UserError, match="none of the 3 results"):
        evaluation.evaluate(gt, evaluation.load_predictions(str(_results(tmp_path, "full"))))


def test_a_shared_youtube_id_never_takes_anothers_result():
    gt_keys = ["same_000000_000010", "same_000020_000030", "other_000000_000010"]
    matched = evaluation.match_ids(gt_keys, ["same", "other", "same_000020_000030"])
    assert matched == {"same_000020_000030": "same_000020_000030", "other_000000_000010": "other"}
    # another clip of the same YouTube video is not this clip's result (it was credited to it)
    assert evaluation.match_ids(["v1aaaaaaaaa_000001_000011"], ["v1aaaaaaaaa_000500_000510"]) == {}
    assert evaluation.match_ids(["v1aaaaaaaaa"], ["v1aaaaaaaaa_000500_000510"]) == {
        "v1aaaaaaaaa": "v1aaaaaaaaa_000500_000510"}


def test_per_segment_results_are_averaged_and_errors_are_counted(tmp_path):
    gt = evaluation.load_ground_truth(str(_gt(tmp_path)), "validation")
    doc = {"results": {"aaaaaaaaaaa_000010_000020": [
        {"segment": [1, 9], "result": _ranked("bowling", "abseiling")},
        {"segment": [9, 17], "result": [{"label": "abseiling", "score": 1.0}, {"label": "bowling", "score": 0.05}]}]},
        "errors": {"ddddddddddd_000001_000011": "d.mp4: no frames"}}
    path = tmp_path / "segments.json"
    path.write_text(json.dumps(doc))
    result = evaluation.evaluate(gt, evaluation.load_predictions(str(path)))
    assert result.hits[1] == 1  # abseiling: 1.0 + 0.9 beats bowling: 1.0 + 0.05
    assert result.n_errors == 1


def test_activitynet_ground_truth_with_taxonomy(tmp_path):
    taxonomy = [{"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None},
                {"nodeId": 1, "nodeName": "Sports", "parentId": 0, "parentName": "Root"},
                {"nodeId": 2, "nodeName": "Surfing", "parentId": 1, "parentName": "Sports"},
                {"nodeId": 3, "nodeName": "Skiing", "parentId": 1, "parentName": "Sports"}]
    database = {"vid1": {"subset": "validation", "annotations": [{"segment": [1, 5], "label": "Surfing"}]},
                "vid2": {"subset": "validation", "annotations": [{"segment": [1, 5], "label": "Skiing"}]}}
    gt_path = tmp_path / "anet.json"
    gt_path.write_text(json.dumps({"taxonomy": taxonomy, "database": database}))
    res = tmp_path / "r.json"
    res.write_text(json.dumps({"results": {"vid1": _ranked("Surfing"), "vid2": _ranked("Surfing")}}))
    result = evaluation.evaluate(evaluation.load_ground_truth(str(gt_path)), evaluation.load_predictions(str(res)))
    assert sorted(result.class_names) == ["Skiing", "Surfing"] and result.accuracy(1) == 0.5


def test_cli_prints_figures_and_writes_summary_confusion_and_top_k_file(tmp_path, capsys):
    gt, res = _gt(tmp_path), _results(tmp_path, "seed", seed_doc=True)
    summary, png = tmp_path / "summary.json", tmp_path / "cm.png"
    status = main(["evaluate", str(gt), str(res), "--subset", "val", "-k", "2", "--output", str(summary),
                   "--confusion", str(png), "--save"])
    out = capsys.readouterr().out
    assert status == 0
    assert "top-1 accuracy: 0.5000" in out and "top-2 accuracy: 0.7500" in out
    assert "mean class accuracy (top-1): 0.5000" in out and "bowling" in out
    data = json.loads(summary.read_text())
    assert data["top1"] == 0.5 and data["top2"] == 0.75 and data["videos"] == 4 and len(data["per_class"]) == 3
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 100
    assert (tmp_path / "top2.txt").read_text() == "0.75"


def test_cli_reports_the_zero_match_error_as_one_line(tmp_path, capsys):
    status = main(["evaluate", str(_gt(tmp_path)), str(_results(tmp_path, "full")), "--subset", "train"])
    assert status == 2
    assert "none of the 3 results" in capsys.readouterr().err


def test_cli_replaces_summary_and_confusion_only_with_overwrite(tmp_path, capsys):
    gt, res = _gt(tmp_path), _results(tmp_path, "full")
    summary, png = tmp_path / "summary.json", tmp_path / "cm.png"
    for flag, path in (("--output", summary), ("--confusion", png)):
        path.write_text("my own file")
        assert main(["evaluate", str(gt), str(res), flag, str(path)]) == 2
        assert f"{flag} {path} already exists: pass --overwrite to replace it" in capsys.readouterr().err
        assert path.read_text() == "my own file"
        assert main(["evaluate", str(gt), str(res), flag, str(path), "--overwrite"]) == 0
        assert path.read_bytes() != b"my own file"
    assert main(["evaluate", str(gt), str(res), "--output", str(res), "--overwrite"]) == 2
    assert f"--output {res} is one of the input files" in capsys.readouterr().err
    assert json.loads(res.read_text())["results"]  # the results file is intact


def test_unlabelled_and_unlisted_ground_truth_is_said_and_activitynet_folder_names_match(tmp_path):
    """A validation entry without a label left the subset without a word (the denominator
    shrank), a label missing from the list counted in no class without one, and results named
    by ActivityNet's frame folders (v_<id>) matched nothing."""
    path = _gt(tmp_path)
    doc = json.loads(path.read_text())
    doc["database"]["fffffffffff_000000_000010"] = {"subset": "validation", "annotations": {}}
    doc["database"]["ggggggggggg_000000_000010"] = {"subset": "validation", "annotations": {"label": "gliding"}}
    path.write_text(json.dumps(doc))
    gt = evaluation.load_ground_truth(str(path), "validation")
    result = evaluation.evaluate(gt, evaluation.load_predictions(str(_results(tmp_path, "full"))))
    report = evaluation.format_report(result)
    assert "1 validation entries carry no label (e.g. 'fffffffffff_000000_000010'): left out" in report
    assert "ground-truth labels missing from the annotation's label list: gliding" in report
    assert result.summary()["unlabelled_videos"] == 1
    assert evaluation.match_ids(["abcdefghijk"], ["v_abcdefghijk"]) == {"abcdefghijk": "v_abcdefghijk"}
