"""The ablation table: every ``configs/model/`` config trained with the same budget on one dataset by one
Hydra multirun, validated on the same held-out episodes, tabulated side by side (JSON + Markdown).

    mmrep train -m 'model=glob(*)' data=data/quality out=runs/ablations epochs=1 \
        max_batches_per_epoch=2000 max_val_batches=100 lr=3.0e-4 lr_schedule=cosine threads=2
    python benchmarks/ablations.py runs/ablations --json benchmarks/results/ablations.json

The sweep trains each config into its own folder under ``out`` (``<job>_<model>``); a killed sweep
resumes where it stopped when the command is repeated (each run resumes from its ``last.pt``).
This script only reads the runs' ``metrics.json`` and the model choice Hydra recorded for each.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

COLUMNS = (  # (metric key, header, format)
    ("contact_f1", "contact F1", "{:.3f}"),
    ("contact_f1_baseline_stays", "F1 'stays'", "{:.3f}"),
    ("alignment_accuracy", "alignment acc.", "{:.3f}"),
    ("flow_epe_moving_px", "flow EPE moving (px)", "{:.2f}"),
    ("flow_epe_moving_zero_px", "zero-flow EPE (px)", "{:.2f}"),
    ("ee_mse", "EE MSE", "{:.4f}"),
    ("kl", "KL", "{:.2f}"),
    ("minutes", "train min", "{:.1f}"),
)


def run_name(run: Path) -> str:
    """The model config a sweep's run used (from Hydra's record), else the folder name."""
    hydra_yaml = run / ".hydra" / "hydra.yaml"
    if hydra_yaml.exists():
        choices = yaml.safe_load(hydra_yaml.read_text())["hydra"]["runtime"]["choices"]
        if choices.get("model"):
            return str(choices["model"])
    return run.name


def markdown_table(rows: dict[str, dict[str, float]]) -> str:
    head = "| model | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|" + " --- |" * (len(COLUMNS) + 1)]
    for name, m in rows.items():
        cells = [fmt.format(m[key]) if key in m else "-" for key, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", help="the sweep's folder (its out=): one run folder per config in it")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    rows: dict[str, dict[str, float]] = {}
    meta: dict = {}
    runs = sorted(p.parent for p in Path(args.runs).glob("*/metrics.json"))
    if not runs:
        raise SystemExit(f"no finished runs (*/metrics.json) in {args.runs}")
    for run in sorted(runs, key=lambda r: (run_name(r) != "full", run_name(r))):
        result = json.loads((run / "metrics.json").read_text())
        final = dict(result["final"])
        final["minutes"] = final.get("train_seconds", 0.0) / 60
        rows[run_name(run)] = final
        cfg = result["config"]
        meta = {"data": cfg["data"], "steps": cfg["max_batches_per_epoch"], "epochs": cfg["epochs"],
                "batch_size": cfg["batch_size"], "val_batches": cfg["max_val_batches"], "lr": cfg["lr"],
                "lr_schedule": cfg["lr_schedule"]}
    table = markdown_table(rows)
    print(table)
    report = {**meta, "table_markdown": table, "results": rows}
    out = Path(args.runs)
    (out / "ablations.json").write_text(json.dumps(report, indent=2))
    (out / "ablations.md").write_text(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
