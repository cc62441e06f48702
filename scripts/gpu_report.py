#!/usr/bin/env python3
"""Turn a device session's results (``scripts/gpu_session.sh``'s $OUT) into docs/benchmarks.md rows.

    python scripts/gpu_report.py OUT_DIR > report.md

Reads ``bench.jsonl`` (one JSON line per measurement, tagged with its stage), ``env.txt`` (date,
card, versions) and ``log.txt`` (each stage's command and exit status), and, where present,
``tests.txt`` and ``gpu_measures.jsonl``. Prints one table row per measurement of ours, in the
columns of docs/benchmarks.md (what | card / machine | date | versions | command | ours |
baseline | ratio), its baseline taken from the same stage (the line with the same batch size, else
the stage's last baseline line before it), then notes: stages skipped or cut off, the tests'
summary line, the figures the CUDA tests recorded. Standard library only: it runs anywhere.
"""
from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HEADER = ("| what | card / machine | date | versions | command | ours | baseline | ratio |\n"
          "|---|---|---|---|---|---|---|---|")
# the figure each kind of line is compared by: (key, unit)
FIGURES = {
    "test": ("videos_per_s", "videos/s"),
    "loader": ("clips_per_s_per_core", "clips/s per core"),
    "train_step_profile": ("profiled_ms_per_step", "ms profiled per step"),
    "test_decode": ("frames_per_s_per_core", "frames/s per core"),
}
DEFAULT_FIGURE = ("clips_per_s", "clips/s")
# ratios a line carries itself, in the order shown
RATIOS = (("speedup", "{}×"), ("steady_speedup", "{}× after start-up"), ("speedup_per_core", "{}× per core"), ("speedup_wall", "{}× wall"),
          ("vs_cpu_decode_per_core", "{}× per core vs CPU decode"), ("vs_cpu_decode_wall", "{}× wall vs CPU decode"),
          ("folded_vs_unfolded", "folded/unfolded {}×"))
STAGE_LINE = re.compile(r"^== (?P<stage>\S+) \(limit \d+s, at \d+s\): (?P<command>.*)$")
EXIT_LINE = re.compile(r"^== (?P<stage>\S+): exit (?P<rc>\d+) at \d+s$")


def read_lines(path: Path) -> List[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def environment(text: str) -> Dict[str, str]:
    """date, card and versions from env.txt (the lines ``gpu_session.sh``'s ``environment`` writes)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found: Dict[str, str] = {}
    for line in lines:
        try:  # `date -u`: Thu Nov 26 18:46:13 UTC 2026
            found.setdefault("date", datetime.strptime(line, "%a %b %d %H:%M:%S %Z %Y").strftime("%Y-%m-%d"))
        except ValueError:
            pass
    for header, row in zip(lines, lines[1:]):  # nvidia-smi's CSV: its header, then one row per GPU
        if header.startswith("name,"):
            parts = [part.strip() for part in row.split(",")]
            found["card"] = f"{parts[0]} ({parts[1]}, driver {parts[2]})" if len(parts) > 2 else row
    cores = next((line for line in lines if line.startswith("cores ")), None)
    if cores:
        found["cores"] = cores.split(",")[0].split()[1]
    versions = []
    for line in lines:
        if line.startswith(("python ", "torchvision ", "av ")):
            words = line.split()
            versions += [f"{name} {value}" for name, value in zip(words[::2], words[1::2])]
    if versions:
        found["versions"] = ", ".join(versions)
    return found


def stages_from_log(text: str) -> Tuple[Dict[str, str], Dict[str, int]]:
    """Each stage's command (as ``resnet3d ...``) and exit status, from log.txt."""
    commands: Dict[str, str] = {}
    exits: Dict[str, int] = {}
    for line in text.splitlines():
        match = STAGE_LINE.match(line)
        if match:
            command = re.sub(r"^\S+ -m resnet3d ", "resnet3d ", match["command"])
            commands[match["stage"]] = command
            continue
        match = EXIT_LINE.match(line)
        if match:
            exits[match["stage"]] = int(match["rc"])
    return commands, exits


def figure(record: dict) -> Tuple[Optional[float], str]:
    key, unit = FIGURES.get(record.get("what", ""), DEFAULT_FIGURE)
    value = record.get(key)
    return (float(value), unit) if isinstance(value, (int, float)) else (None, unit)


def describe(record: dict) -> str:
    """The 'what' cell: the kind of measurement and the settings that tell its lines apart."""
    parts = [record.get("what", "?").replace("_", " ")]
    model = record.get("model")
    if model:
        widen = record.get("widen_factor")
        parts.append(model + (f" ×{widen} width" if widen not in (None, 1.0) else ""))
    if record.get("sample_duration") and record.get("sample_size"):
        parts.append(f"{record['sample_duration']}×{record['sample_size']}×{record['sample_size']}")
    elif record.get("clip"):
        parts.append(str(record["clip"]).replace("x", "×"))
    if record.get("batch_size"):
        parts.append(f"batch {record['batch_size']}")
    setting = record.get("setting") or record.get("scheme")
    if not setting and record.get("precision"):  # train_step lines: no setting of their own
        setting = " ".join(str(record[key]) for key in ("precision", "memory_format") if record.get(key))
        if record.get("compile_mode") not in (None, "none"):
            setting += f" compile {record['compile_mode']}"
    parts.append(str(setting or ""))
    if record.get("decode_device") in ("cuda", "mixed"):
        where = record.get("assemble_device")
        parts.append(f"--decode-device {record['decode_device']}" + (f" --assemble-device {where}" if where and not
                                                                      str(where).startswith("cuda") else ""))
    if record.get("n_threads") is not None and record.get("what") == "train_end_to_end":
        parts.append(f"{record['n_threads']} workers")
    for key in ("epochs", "stem_pad"):
        if record.get(key) is not None:
            parts.append(f"--{key.replace('_', '-')} {record[key]}")
    return ", ".join(part for part in parts if part)


def kinds_text(record: dict, n: int = 5) -> str:
    """A profile line's largest kinds of work: "convolution 61%, batch_norm 18%, ..."."""
    kinds = record.get("by_kind") or {}
    return ", ".join(f"{kind} {share:.0%}" for kind, share in list(kinds.items())[:n])


def ours_cell(record: dict) -> str:
    value, unit = figure(record)
    cell = f"{value:g} {unit}" if value is not None else "–"
    extras = []
    if record.get("by_kind"):
        extras.append(kinds_text(record))
        top = record.get("top") or []
        if top:
            extras.append(f"largest: {top[0].get('name', '?')[:80]} {top[0].get('share', 0):.0%}")
    if record.get("what") == "loader" and isinstance(record.get("clips_per_s"), (int, float)):
        extras.append(f"{record['clips_per_s']:g} clips/s wall")
    for key, label in (("data_wait_share", "data wait {:.1%}"), ("peak_memory_gib", "peak {:g} GiB"),
                       ("top1_agreement", "top-1 agreement {:g}"), ("rss_main_growth_mib", "main RSS growth {:g} MiB"),
                       ("rss_workers_growth_mib", "workers' RSS growth {:g} MiB"),
                       ("untimed_steps", "timed after {:g} untimed steps"),
                       ("setup_s", "set-up {:g} s"), ("first_chunk_s", "workers' first chunk after {:g} s"),
                       ("gpu_decode_share", "GPU's share of the batches at the end {:g}")):
        if isinstance(record.get(key), (int, float)):
            extras.append(label.format(record[key]))
    return cell + (f" ({'; '.join(extras)})" if extras else "")


def ratio_cell(record: dict, baseline: Optional[dict]) -> str:
    if record.get("what") == "train_step_profile":
        return "–"  # times, not rates: the two cells say it
    ratios = [label.format(record[key]) for key, label in RATIOS if isinstance(record.get(key), (int, float))]
    if not ratios and baseline is not None:
        ours, _ = figure(record)
        base, _ = figure(baseline)
        if ours is not None and base:
            ratios.append(f"{ours / base:.2f}× (computed)")
    return "; ".join(ratios) or "–"


def match_baseline(records: List[dict], index: int) -> Optional[dict]:
    """The baseline line of ``records[index]``: same stage and kind; of those, the nearest with
    the same batch size, else the last one before it, else the first."""
    record = records[index]
    candidates = [(i, r) for i, r in enumerate(records) if r.get("baseline") is True
                  and r.get("stage") == record.get("stage") and r.get("what") == record.get("what")]
    same_batch = [(i, r) for i, r in candidates if r.get("batch_size") == record.get("batch_size")]
    if same_batch:
        return min(same_batch, key=lambda pair: abs(pair[0] - index))[1]
    before = [r for i, r in candidates if i < index]
    return before[-1] if before else (candidates[0][1] if candidates else None)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report(out: Path) -> str:
    records = read_lines(out / "bench.jsonl")
    env = environment(_text(out / "env.txt"))
    log = _text(out / "log.txt")
    commands, exits = stages_from_log(log)
    rows = [HEADER]
    for index, record in enumerate(records):
        if "skipped" in record or record.get("baseline") is not False:
            continue
        machine = record.get("machine") or {}
        card = env.get("card") or machine.get("gpu") or f"CPU only ({machine.get('platform', '?')})"
        cores = env.get("cores") or machine.get("usable_cpus")
        if cores:
            card += f", {cores} cores"
        date = env.get("date") or datetime.fromtimestamp((out / "bench.jsonl").stat().st_mtime).strftime("%Y-%m-%d")
        versions = env.get("versions") or f"python {machine.get('python', '?')}, torch {machine.get('torch', '?')}"
        stage = record.get("stage", "?")
        command = commands.get(stage)
        command_cell = f"stage {stage}: `{command}`" if command else f"stage {stage}"
        baseline = match_baseline(records, index)
        if baseline is not None:
            value, unit = figure(baseline)
            base_cell = f"{value:g} {unit}" if value is not None else "–"
            if baseline.get("scheme"):
                base_cell += f" ({baseline['scheme']})"
            if baseline.get("by_kind"):
                base_cell += f" ({kinds_text(baseline)})"
        else:
            base_cell = "–"
        row = [describe(record), card, date, versions, command_cell, ours_cell(record), base_cell,
               ratio_cell(record, baseline)]
        rows.append("| " + " | ".join(cell(part) for part in row) + " |")
    notes = []
    for record in records:
        if "skipped" in record:
            notes.append(f"- stage {record.get('stage')}: skipped ({record['skipped']})")
    for stage, rc in exits.items():
        if rc:
            why = " (its time limit: figures after the cut are missing)" if rc in (124, 130, 137) else ""
            notes.append(f"- stage {stage}: exit {rc}{why}; see log.txt")
    tests = out / "tests.txt"
    if tests.exists():
        summary = [line for line in _text(tests).splitlines()
                   if re.search(r"\b(passed|failed|error|skipped)\b.* in [\d.]+s", line)]
        if summary:
            notes.append(f"- CUDA tests: {summary[-1].strip('= ')}")
    for measure in read_lines(out / "gpu_measures.jsonl"):
        notes.append("- measured by a CUDA test: " + json.dumps(measure, sort_keys=True))
    return "\n".join(rows) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def main(argv: List[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python scripts/gpu_report.py OUT_DIR   (the folder gpu_session.sh wrote)", file=sys.stderr)
        return 2
    out = Path(argv[0])
    if not (out / "bench.jsonl").exists():
        print(f"gpu_report: {out / 'bench.jsonl'} does not exist: run scripts/gpu_session.sh first", file=sys.stderr)
        return 2
    sys.stdout.write(report(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
