"""The README's robustness tables from `mmrep evaluate` outputs and the runs' training metrics.

    python benchmarks/robustness_summary.py --grid outputs/eval_robust outputs/eval_plain \
        --sim clean=outputs/eval_robust_clean_test occluder50=outputs/eval_robust_occluder50_test \
        --runs robust=runs/robust plain=runs/quality_poe --out benchmarks/results/robustness.json

Prints Markdown tables; writes every number it used to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TARGET_LEVEL = 0.5


def load(folder: str) -> dict:
    return json.loads((Path(folder) / "results.json").read_text())


def pick(results: list[dict], model: str, name: str, p: float) -> dict | None:
    return next((r for r in results if r["model"] == model and r["perturbation"] == name and abs(r["p"] - p) < 1e-9),
                None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", nargs="+", required=True, help="mmrep evaluate output folders (perturbation grid)")
    ap.add_argument("--sim", nargs="*", default=[], help="label=folder: clean-only evaluations of other datasets")
    ap.add_argument("--runs", nargs="*", default=[], help="label=run folder: training metrics and time")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    grid = [r for folder in args.grid for r in load(folder)["results"]]
    models = list(dict.fromkeys(r["model"] for r in grid))
    out: dict = {"grid": args.grid, "models": models, "clean": {}, "at_0.5": {}, "sim": {}, "training": {}}
    print("| model | contact F1 | F1 'stays' | alignment | flow EPE moving (px) | zero flow (px) | EE MSE |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for m in models:
        r = pick(grid, m, "clean", 0.0)
        out["clean"][m] = r
        print(f"| {m} | {r['contact_f1']:.3f} | {r['contact_f1_baseline_stays']:.3f} | {r['alignment_accuracy']:.3f} | "
              f"{r['flow_epe_moving_px']:.2f} | {r['flow_epe_moving_zero_px']:.2f} | {r['ee_mse']:.4f} |")
    names = list(dict.fromkeys(r["perturbation"] for r in grid if r["perturbation"] != "clean"))
    heads = " | ".join(f"{m}: contact F1 / alignment" for m in models)
    print(f"\n| perturbation at p = {TARGET_LEVEL} | {heads} |")
    print("| --- | " + " | ".join("---" for _ in models) + " |")
    for name in names:
        cells = []
        for m in models:
            r = pick(grid, m, name, TARGET_LEVEL)
            out["at_0.5"].setdefault(name, {})[m] = r
            cells.append("-" if r is None else f"{r.get('contact_f1', float('nan')):.3f} / "
                                                f"{r.get('alignment_accuracy', float('nan')):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.sim:
        print("\n| dataset (48 episodes, seed 5000) | model | contact F1 | F1 'stays' | alignment | "
              "flow EPE moving (px) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for spec in args.sim:
            label, folder = spec.split("=", 1)
            for r in load(folder)["results"]:
                if r["perturbation"] == "clean":
                    out["sim"].setdefault(label, {})[r["model"]] = r
                    print(f"| {label} | {r['model']} | {r['contact_f1']:.3f} | {r['contact_f1_baseline_stays']:.3f} | "
                          f"{r['alignment_accuracy']:.3f} | {r['flow_epe_moving_px']:.2f} |")
    for spec in args.runs:
        label, folder = spec.split("=", 1)
        history = [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]
        out["training"][label] = {"history": history, "train_minutes": sum(h["train_seconds"] for h in history) / 60}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
