"""The privileged-state policy runs in one place: per run, the held-out curves
(``eval.jsonl``: 30 seeds every 20k steps, mean and sampled actions), the final policy on 100 held-out
seeds (``eval/results.json`` of ``mmrep policy eval``) and the wall time; per variant (run folders
``state_<variant>_s<seed>``), the seeds' mean; a figure of every curve.

    python benchmarks/state_policy_summary.py runs/state_fine_s0 runs/state_coarse_s0 ... \
        --out benchmarks/results/state_policy

Writes ``summary.json``, ``curves.png`` and ``table.md`` (docs/results/policies.md) to ``--out``, and copies
each run's ``config.json``, ``eval.jsonl`` and ``eval/results.json`` (episodes included) beside them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np

from mmrep.policy_curves import read_evaluations, wall_seconds


def run_summary(run: Path) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    final = json.loads((run / "eval" / "results.json").read_text())
    modes = {r["mode"]: {k: r[k] for k in ("episodes", "success_rate", "success_ci95", "mean_steps_to_success",
                                            "peak_force_step_mean_n", "peak_force_substep_n")}
             for r in final["results"] if r["setting"] == "clean"}
    curve = [{"timesteps": r["timesteps"], "deterministic": r["success_rate"],
              "stochastic": r.get("stochastic", {}).get("success_rate")} for r in read_evaluations(run)]
    return {"run": run.name, "seed": cfg["seed"], "fine_scale": cfg["obs"].get("fine_scale", 0.0),
            "total_steps": cfg["total_steps"], "n_envs": cfg["n_envs"], "algo": cfg["algo"],
            "final_100_seeds": modes, "eval_seeds": final["seeds"], "curve_30_seeds": curve,
            "wall_minutes": wall_seconds(run) / 60}


def plot_variants(runs: list[dict], variants: dict[str, dict], path: Path) -> None:
    """One panel per variant: each seed's held-out success (30 seeds) against env steps; solid: mean
    action, dashed: sampled actions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(variants), figsize=(4.2 * len(variants), 3.4), dpi=100, sharey=True,
                             squeeze=False)
    for ax, (name, v) in zip(axes[0], variants.items()):
        for r in (r for r in runs if r["run"] in v["runs"]):
            colour = f"C{r['seed']}"
            steps = [c["timesteps"] for c in r["curve_30_seeds"]]
            ax.plot(steps, [c["deterministic"] for c in r["curve_30_seeds"]], "-o", ms=3, color=colour,
                    label=f"seed {r['seed']}, mean action")
            ax.plot(steps, [c["stochastic"] for c in r["curve_30_seeds"]], "--", color=colour, alpha=0.7,
                    label=f"seed {r['seed']}, sampled")
        ax.set_title(f"{name} ({'with' if name == 'fine' else 'without'} mm channels)", fontsize=10)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out success (30 seeds)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def variant(name: str) -> str:
    m = re.match(r"state_(.+)_s\d+$", name)
    return m.group(1) if m else name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [run_summary(Path(r)) for r in args.runs]
    variants: dict[str, dict] = {}
    for r in runs:
        v = variants.setdefault(variant(r["run"]), {"runs": []})
        v["runs"].append(r["run"])
    for name, v in variants.items():
        members = [r for r in runs if variant(r["run"]) == name]
        for mode in ("deterministic", "stochastic"):
            rates = [r["final_100_seeds"][mode]["success_rate"] for r in members]
            v[f"{mode}_mean"] = float(np.mean(rates))
            v[f"{mode}_min"] = float(np.min(rates))
    summary = {"benchmark": "state_policy", "runs": runs, "variants": variants,
               "target": "deterministic success >= 0.90 over 100 held-out seeds",
               "meets_target": {k: v["deterministic_min"] >= 0.9 for k, v in variants.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = ["| run | fine channels | env steps | wall (min) | deterministic (100 seeds) | 95% CI | sampled | 95% CI "
             "| steps to success (det.) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        d, s = r["final_100_seeds"]["deterministic"], r["final_100_seeds"]["stochastic"]
        steps = "-" if d["mean_steps_to_success"] is None else f"{d['mean_steps_to_success']:.0f}"
        lines.append(f"| {r['run']} | {'yes' if r['fine_scale'] else 'no'} | {r['total_steps']:,} | "
                     f"{r['wall_minutes']:.1f} | {d['success_rate']:.2f} | {d['success_ci95'][0]:.2f}-"
                     f"{d['success_ci95'][1]:.2f} | {s['success_rate']:.2f} | {s['success_ci95'][0]:.2f}-"
                     f"{s['success_ci95'][1]:.2f} | {steps} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plot_variants(runs, variants, out / "curves.png")
    for r, a in zip(runs, args.runs):
        dest = out / "runs" / r["run"]
        (dest / "eval").mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "eval.jsonl", "eval/results.json", "eval/report.md"):
            if (Path(a) / name).exists():
                shutil.copy(Path(a) / name, dest / name)
    print("\n".join(lines))
    print(f"wrote {out}/summary.json, table.md, curves.png")


if __name__ == "__main__":
    main()
