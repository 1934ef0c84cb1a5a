"""The paper's policy experiment (issue 12) in one table: every row of ``configs/paper/`` that ``make
paper`` has trained and evaluated, per closed-loop setting and action mode.

    python benchmarks/paper_summary.py runs/paper --out benchmarks/results/paper

Reads every ``<row>_s<seed>/`` run folder holding ``eval/results.json`` (``mmrep policy eval``) and
reports per row: the budget in env steps, the training wall time per seed (TensorBoard event times,
killed time not counted), and per setting and mode each seed's success on the held-out seeds, their
mean, and the pooled rate over all seeds' episodes with its 95% Wilson interval. Writes
``summary.json``, ``table.md`` (the README's tables) and ``curves.png`` (every run's held-out curve),
and copies each run's ``config.json``, ``eval.jsonl`` and ``eval/results.json`` beside them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np

from mmrep.policy import wilson_interval
from mmrep.policy_curves import plot_curves, wall_seconds

RUN_NAME = re.compile(r"(?P<row>.+)_s(?P<seed>\d+)$")


def find_runs(root: Path) -> dict[str, list[Path]]:
    """{row: run folders, by seed} of the evaluated runs under ``root``."""
    rows: dict[str, list[Path]] = {}
    for run in sorted(root.iterdir()):
        m = RUN_NAME.match(run.name)
        if m and (run / "eval" / "results.json").exists():
            rows.setdefault(m["row"], []).append(run)
    if not rows:
        raise SystemExit(f"{root}: no <row>_s<seed>/eval/results.json (run `make paper` first)")
    return rows


def row_summary(runs: list[Path]) -> dict:
    """Budget, wall time and per-(setting, mode) success of one row's seeds."""
    configs = [json.loads((r / "config.json").read_text()) for r in runs]
    results = [json.loads((r / "eval" / "results.json").read_text()) for r in runs]
    cells: dict[str, dict] = {}
    for run, res in zip(runs, results):
        for r in res["results"]:
            key = f"{r['setting']}/{r['shape']}/{r['mode']}"
            cell = cells.setdefault(key, {"setting": r["setting"], "shape": r["shape"], "mode": r["mode"],
                                          "seeds": {}, "successes": 0, "episodes": 0})
            wins = sum(e["success"] for e in r["episode_results"])
            cell["seeds"][run.name] = r["success_rate"]
            cell["successes"] += wins
            cell["episodes"] += len(r["episode_results"])
    for cell in cells.values():
        cell["mean_of_seeds"] = float(np.mean(list(cell["seeds"].values())))
        cell["pooled"] = cell["successes"] / max(cell["episodes"], 1)
        cell["pooled_ci95"] = wilson_interval(cell["successes"], cell["episodes"])
    return {"runs": [r.name for r in runs], "obs": configs[0]["obs"], "algo": configs[0]["algo"]["name"],
            "total_steps": sorted({c["total_steps"] for c in configs}),
            "wall_minutes": {r.name: wall_seconds(r) / 60 for r in runs},
            "eval_seeds": results[0]["seeds"], "cells": cells}


def table(rows: dict[str, dict], setting: str) -> list[str]:
    """Markdown rows: one line per row of the experiment and peg shape for ``setting``."""
    lines = ["| row | seeds | env steps | wall (min, per seed) | deterministic (pooled) | 95% CI | per seed | "
             "sampled (pooled) | 95% CI | per seed |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in rows.items():
        det = [c for c in row["cells"].values() if c["setting"] == setting and c["mode"] == "deterministic"]
        sto = [c for c in row["cells"].values() if c["setting"] == setting and c["mode"] == "stochastic"]
        for d, s in zip(det, sto):
            label = f"{name} ({d['shape']})"
            wall = ", ".join(f"{m:.0f}" for m in row["wall_minutes"].values())
            lines.append(
                f"| {label} | {len(row['runs'])} | {'/'.join(f'{t:,}' for t in row['total_steps'])} | {wall} | "
                f"{d['pooled']:.2f} | {d['pooled_ci95'][0]:.2f}-{d['pooled_ci95'][1]:.2f} | "
                f"{', '.join(f'{v:.2f}' for v in d['seeds'].values())} | {s['pooled']:.2f} | "
                f"{s['pooled_ci95'][0]:.2f}-{s['pooled_ci95'][1]:.2f} | "
                f"{', '.join(f'{v:.2f}' for v in s['seeds'].values())} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the folder of the row runs (runs/paper)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    found = find_runs(args.root)
    rows = {name: row_summary(runs) for name, runs in found.items()}
    settings = sorted({c["setting"] for r in rows.values() for c in r["cells"].values()},
                      key=lambda s: (s != "clean", s))
    text = []
    for setting in settings:
        text += [f"### {setting}", ""] + table({n: r for n, r in rows.items()
                                               if any(c["setting"] == setting for c in r["cells"].values())},
                                              setting) + [""]
    (args.out / "table.md").write_text("\n".join(text))
    (args.out / "summary.json").write_text(json.dumps({"benchmark": "paper", "rows": rows}, indent=2))
    curves = {run.name: run for runs in found.values() for run in runs if (run / "eval.jsonl").exists()}
    if curves:
        plot_curves(curves, args.out / "curves.png")
    for runs in found.values():
        for run in runs:
            dest = args.out / "runs" / run.name
            (dest / "eval").mkdir(parents=True, exist_ok=True)
            for name in ("config.json", "eval.jsonl", "eval/results.json", "eval/report.md"):
                if (run / name).exists():
                    shutil.copy(run / name, dest / name)
    print("\n".join(text))
    print(f"wrote {args.out}/summary.json, table.md" + (", curves.png" if curves else ""))


if __name__ == "__main__":
    main()
