"""The ablation table: every ``configs/model/`` config trained with the same budget on one dataset,
validated on the same held-out episodes, side by side (JSON + Markdown).

Each config trains into its own folder under ``--out`` through ``mmrep.train.train``, so a killed
run resumes where it stopped when the command is repeated, and finished configs are not retrained.

    python benchmarks/ablations.py --data outputs/paper100k --out runs/ablations \\
        --steps 2000 --val-batches 100 --json benchmarks/results/ablations.json lr=3.0e-4 lr_schedule=cosine

``--steps`` is the number of optimiser steps (batches of 64) per config, ``--val-batches`` the
number of validation batches (the same ones for every config: the validation order is fixed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mmrep.cli import config_dir, train_config
from mmrep.train import train

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


def model_configs() -> list[str]:
    """Every config of the ``model`` group, the full model first."""
    names = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))
    return sorted(names, key=lambda n: (n != "full", n))


def markdown_table(rows: dict[str, dict[str, float]]) -> str:
    head = "| model | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|" + " --- |" * (len(COLUMNS) + 1)]
    for name, m in rows.items():
        cells = [fmt.format(m[key]) if key in m else "-" for key, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset folder (manifest.json) or reference files")
    ap.add_argument("--out", default="runs/ablations", help="one training folder per config in here")
    ap.add_argument("--steps", type=int, default=2000, help="optimiser steps per config")
    ap.add_argument("--val-batches", type=int, default=100)
    ap.add_argument("--models", nargs="*", default=None, help="configs to run (default: all)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("overrides", nargs="*", help="extra train overrides, e.g. threads=2 lr=3e-4")
    args = ap.parse_args()

    names = args.models or model_configs()
    rows: dict[str, dict[str, float]] = {}
    for name in names:
        run = Path(args.out) / name
        cfg, progress = train_config([f"model={name}", f"data={args.data}", f"out={run}", "epochs=1",
                            f"max_batches_per_epoch={args.steps}", f"max_val_batches={args.val_batches}",
                            *args.overrides])
        done = run / "metrics.json"
        t0 = time.time()
        print(f"== {name}: {args.steps} steps -> {run}", flush=True)
        result = json.loads(done.read_text()) if done.exists() else train(cfg, progress=progress)
        final = dict(result["final"])
        final["minutes"] = final.get("train_seconds", time.time() - t0) / 60
        rows[name] = final
        print(markdown_table({name: final}), flush=True)

    table = markdown_table(rows)
    print(table)
    report = {"data": args.data, "steps": args.steps, "batch_size": cfg.batch_size, "val_batches": args.val_batches,
              "overrides": args.overrides, "table_markdown": table, "results": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablations.json").write_text(json.dumps(report, indent=2))
    (out / "ablations.md").write_text(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
