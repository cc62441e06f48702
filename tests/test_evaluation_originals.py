"""``resnet3d evaluate`` on result files in the exact formats the originals' test modes write,
against annotation JSONs of Kinetics, UCF-101, HMDB-51 and ActivityNet, with figures worked out
by hand (the successor's ``eval_accuracy.py``: hits / all videos of the subset, ``--ignore``:
hits / videos with a result; its ranking is a stable sort by score, so ties keep file order)."""
from __future__ import annotations

import json

import pytest

from resnet3d.cli import main

KINETICS_LABELS = ["air drumming", "dancing, with ribbons", "passing American football (in game)",
                   "massaging person's head"]


def _ranked(*pairs):
    return [{"label": label, "score": score} for label, score in pairs]


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return str(path)


def _kinetics_gt(tmp_path):
    a, b, c, d = KINETICS_LABELS
    database = {  # the successor's keys: <youtube id>_<start:06d>_<end:06d>; ids hold '-' and '_'
        "--07WQ2iBlw_000001_000011": {"subset": "validation", "annotations": {"label": a, "segment": [1, 301]}},
        "-_k9-lsj3Ys_000030_000040": {"subset": "validation", "annotations": {"label": b, "segment": [1, 301]}},
        "abc_defg_hi_000100_000110": {"subset": "validation", "annotations": {"label": c, "segment": [1, 301]}},
        "zzzzzzzzzzz_000000_000010": {"subset": "validation", "annotations": {"label": d, "segment": [1, 301]}},
        "yyyyyyyyyyy_000000_000010": {"subset": "validation", "annotations": {"label": d, "segment": [1, 301]}},
        "ttttttttttt_000000_000010": {"subset": "testing", "annotations": {}},
        "rrrrrrrrrrr_000000_000010": {"subset": "training", "annotations": {"label": a}},
    }
    return _write(tmp_path / "kinetics.json", {"labels": KINETICS_LABELS, "database": database})


# Per video (a..d as in KINETICS_LABELS): 07WQ right; k9 a tie whose first entry in the file is
# wrong (top-1 miss, top-2 hit); abc one label only, right; zzz wrong twice; yyy has no result.
def _kinetics_results(form):
    a, b, c, d = KINETICS_LABELS
    scores = {  # the seed's scores are averaged log-probabilities: negative, higher is better
        ("--07WQ2iBlw", a): _ranked((a, -0.1), (b, -2.0)),
        ("-_k9-lsj3Ys", b): _ranked((a, -0.5), (b, -0.5)),
        ("abc_defg_hi", c): _ranked((c, -0.3)),
        ("zzzzzzzzzzz", d): _ranked((a, -0.2), (c, -0.9)),
    }
    full = {"--07WQ2iBlw": "_000001_000011", "-_k9-lsj3Ys": "_000030_000040", "abc_defg_hi": "_000100_000110",
            "zzzzzzzzzzz": "_000000_000010"}
    if form == "seed":  # th main.lua --test_video: <label>/<youtube id>, plus the test set's test/<id>
        results = {f"{label}/{yid}": ranked for (yid, label), ranked in scores.items()}
        results["test/qqqqqqqqqqq"] = _ranked((a, -0.1))
        return {"version": "VERSION 1.3", "results": results, "external_data": {"used": False, "details": "..."}}
    if form == "youtube":  # ours in the seed's format, and what the Kinetics evaluation expects
        return {"version": "VERSION 1.3", "results": {yid: ranked for (yid, _), ranked in scores.items()},
                "external_data": {"used": False, "details": "..."}}
    return {"results": {yid + full[yid]: ranked for (yid, _), ranked in scores.items()}}  # the successor's


@pytest.mark.parametrize("form", ["seed", "youtube", "successor"])
def test_kinetics_results_of_every_original_score_as_counted_by_hand(tmp_path, capsys, form):
    gt = _kinetics_gt(tmp_path)
    results = _write(tmp_path / "val.json", _kinetics_results(form))
    assert main(["evaluate", gt, results, "-k", "2", "--save", "--output", str(tmp_path / "summary.json")]) == 0
    out = capsys.readouterr().out
    assert "subset validation: 5 videos, 4 with a result" in out
    assert "top-1 accuracy: 0.4000  (2 of the 5 videos in the subset)" in out
    assert "top-2 accuracy: 0.6000  (3 of the 5 videos in the subset)" in out
    # classes: air drumming 1/1, dancing 0/1, football 1/1, massaging 0/2
    assert "mean class accuracy (top-1): 0.5000" in out
    assert (tmp_path / "top2.txt").read_text() == "0.6"  # str(accuracy), as the successor's --save
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["unmatched_results"] == (1 if form == "seed" else 0)
    assert [(row["class"], row["videos"], row["top1_correct"]) for row in summary["per_class"]] == [
        ("air drumming", 1, 1), ("dancing, with ribbons", 1, 0), ("passing American football (in game)", 1, 1),
        ("massaging person's head", 2, 0)]

    assert main(["evaluate", gt, results, "-k", "2", "--ignore", "--max-classes", "0"]) == 0
    out = capsys.readouterr().out
    assert "top-1 accuracy: 0.5000  (2 of the 4 videos with a result)" in out
    assert "top-2 accuracy: 0.7500  (3 of the 4 videos with a result)" in out


def test_ucf101_per_window_results_are_averaged(tmp_path, capsys):
    """The successor's --inference_no_average output on its ucf101_01.json."""
    labels = ["ApplyEyeMakeup", "ApplyLipstick", "YoYo"]
    database = {"v_ApplyEyeMakeup_g01_c01": {"subset": "validation", "annotations": {"label": "ApplyEyeMakeup"}},
                "v_ApplyLipstick_g01_c01": {"subset": "validation", "annotations": {"label": "ApplyLipstick"}},
                "v_YoYo_g01_c01": {"subset": "validation", "annotations": {"label": "YoYo"}},
                "v_YoYo_g08_c01": {"subset": "training", "annotations": {"label": "YoYo"}}}
    gt = _write(tmp_path / "ucf101_01.json", {"labels": labels, "database": database})
    windows = {
        "v_ApplyEyeMakeup_g01_c01": [{"segment": [1, 17], "result": _ranked(("ApplyEyeMakeup", 0.6), ("YoYo", 0.4))}],
        "v_ApplyLipstick_g01_c01": [{"segment": [1, 17], "result": _ranked(("YoYo", 0.6), ("ApplyLipstick", 0.3))}],
        # YoYo: 0.9 + 0.15 = 1.05 beats ApplyLipstick: 0.1 + 0.8 = 0.9 (a label missing from a
        # window's top k counts 0 there)
        "v_YoYo_g01_c01": [{"segment": [1, 17], "result": _ranked(("YoYo", 0.9), ("ApplyLipstick", 0.1))},
                           {"segment": [17, 33], "result": _ranked(("ApplyLipstick", 0.8), ("YoYo", 0.15))}],
    }
    results = _write(tmp_path / "val.json", {"results": windows})
    assert main(["evaluate", gt, results, "--subset", "val", "-k", "2", "--max-classes", "0"]) == 0
    out = capsys.readouterr().out
    assert "top-1 accuracy: 0.6667  (2 of the 3 videos in the subset)" in out
    assert "top-2 accuracy: 1.0000  (3 of the 3 videos in the subset)" in out


def test_hmdb51_names_match_exactly(tmp_path, capsys):
    labels = ["brush_hair", "cartwheel"]
    names = {"April_09_brush_hair_u_nm_np1_ba_goo_0": "brush_hair",
             "#20_Rhythm_clap_u_nm_np1_fr_goo_0": "cartwheel",  # HMDB names hold '#', '(' ...
             "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0": "cartwheel"}
    database = {name: {"subset": "validation", "annotations": {"label": label}} for name, label in names.items()}
    gt = _write(tmp_path / "hmdb51_1.json", {"labels": labels, "database": database})
    results = _write(tmp_path / "val.json", {"results": {
        "April_09_brush_hair_u_nm_np1_ba_goo_0": _ranked(("brush_hair", 0.7), ("cartwheel", 0.3)),
        "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0": _ranked(("brush_hair", 0.7), ("cartwheel", 0.3))}})
    assert main(["evaluate", gt, results, "--max-classes", "0"]) == 0
    assert "top-1 accuracy: 0.3333  (1 of the 3 videos in the subset)" in capsys.readouterr().out


def _activitynet(prefix):
    taxonomy = [{"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None},
                {"nodeId": 1, "nodeName": "Sports", "parentId": 0, "parentName": "Root"},
                {"nodeId": 2, "nodeName": "Surfing", "parentId": 1, "parentName": "Sports"},
                {"nodeId": 3, "nodeName": "Skiing", "parentId": 1, "parentName": "Sports"}]

    def entry(subset, labels):
        return {"subset": subset, "duration": 10.0, "resolution": "640x360", "url": "https://youtu.be/x",
                "annotations": [{"segment": [0.5 + i, 3.0 + i], "label": label} for i, label in enumerate(labels)]}

    database = {prefix + "sJFgo9H6zNo": entry("validation", ["Surfing", "Surfing"]),
                prefix + "V1zhqaGFY2A": entry("validation", ["Skiing"]),
                prefix + "tttttttttte": entry("testing", [])}
    return {"version": "VERSION 1.3", "taxonomy": taxonomy, "database": database}


@pytest.mark.parametrize("gt_prefix, result_prefix", [("", "v_"), ("v_", ""), ("", ""), ("v_", "v_")])
def test_activitynet_ids_with_and_without_v_prefix(tmp_path, capsys, gt_prefix, result_prefix):
    """The official JSON keys videos by youtube id; frame folders (and some annotation files) say v_<id>."""
    gt = _write(tmp_path / "anet.json", _activitynet(gt_prefix))
    ranked = _ranked(("Surfing", 0.7), ("Skiing", 0.3))
    results = _write(tmp_path / "val.json", {"results": {result_prefix + "sJFgo9H6zNo": ranked,
                                                         result_prefix + "V1zhqaGFY2A": ranked}})
    assert main(["evaluate", gt, results, "-k", "2", "--max-classes", "0"]) == 0
    out = capsys.readouterr().out
    assert "subset validation: 2 videos, 2 with a result" in out
    assert "top-1 accuracy: 0.5000  (1 of the 2 videos in the subset)" in out
    assert "top-2 accuracy: 1.0000" in out


def test_one_result_is_never_two_videos():
    """Ground truth holding both "<id>" and "v_<id>": the result named "v_<id>" is that key's alone
    (the bare-id route gave it to both)."""
    from resnet3d.evaluation import match_ids

    assert match_ids(["sJFgo9H6zNo", "v_sJFgo9H6zNo"], ["v_sJFgo9H6zNo"]) == {"v_sJFgo9H6zNo": "v_sJFgo9H6zNo"}
    assert match_ids(["sJFgo9H6zNo", "v_sJFgo9H6zNo"], ["sJFgo9H6zNo"]) == {"sJFgo9H6zNo": "sJFgo9H6zNo"}
    assert match_ids(["v_sJFgo9H6zNo"], ["sJFgo9H6zNo"]) == {"v_sJFgo9H6zNo": "sJFgo9H6zNo"}
