"""Learning curves of policy runs: held-out success against env steps, with the mean action
(deterministic) and with sampled actions, from each run's ``eval.jsonl``.

    python -m mmrep.policy_curves runs/policy_state runs/policy_state_coarse --out curves.png

``mmrep policy train`` writes ``curves.png`` into its run folder the same way.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path
from typing import Any


def read_evaluations(run: str | Path, missing_ok: bool = False) -> list[dict[str, Any]]:
    """The rows of ``<run>/eval.jsonl``, in order; a resumed run's repeated step keeps its last row
    (``missing_ok``: ``[]`` where the run has none yet)."""
    path = Path(run) / "eval.jsonl"
    if missing_ok and not path.exists():
        return []
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (a `mmrep policy train` run with eval_episodes > 0?)")
    rows: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[int(row["timesteps"])] = row
    return [rows[k] for k in sorted(rows)]


def wall_seconds(run: str | Path) -> float:
    """Training wall time from TensorBoard's event times: first to last event of each file (a resumed
    run writes a new file; the time it lay killed is not counted)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    total = 0.0
    for path in sorted(glob.glob(str(Path(run) / "tb" / "*" / "events*"))):
        acc = EventAccumulator(path, size_guidance={"scalars": 0})
        acc.Reload()
        times = [e.wall_time for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)]
        if times:
            total += max(times) - min(times)
    return total


def draw_curves(ax: Any, runs: dict[str, str | Path], legend_size: float = 7) -> None:
    """Success rate (with its 95% Wilson interval, shaded) against env steps per run on one matplotlib
    axis; solid: deterministic, dashed: stochastic; dotted: the other settings of a periodic evaluation
    that ran several (``eval_settings``; the solid line is the first). ``runs``: {label: run folder}."""
    for i, (label, run) in enumerate(runs.items()):
        rows = read_evaluations(run)
        colour = f"C{i}"
        for mode, style in (("deterministic", "-"), ("stochastic", "--")):
            stats = [r if mode == "deterministic" else r.get("stochastic") for r in rows]
            pts = [(r["timesteps"], s) for r, s in zip(rows, stats) if s is not None]
            if not pts:
                continue
            steps = [t for t, _ in pts]
            ax.plot(steps, [s["success_rate"] for _, s in pts], style, color=colour, marker="o", ms=3,
                    label=f"{label}, {mode}")
            ax.fill_between(steps, [s["success_ci95"][0] for _, s in pts], [s["success_ci95"][1] for _, s in pts],
                            color=colour, alpha=0.08 if mode == "stochastic" else 0.15, lw=0)
        for k, name in enumerate(list(rows[-1].get("settings", {}))[1:]):
            pts = [(r["timesteps"], r["settings"][name]["success_rate"]) for r in rows if name in r.get("settings", {})]
            ax.plot([t for t, _ in pts], [v for _, v in pts], ":", color=colour, marker="sv^<>"[k % 5], ms=3,
                    label=f"{label}, {name}")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size, loc="best")


def save_figure(fig: Any, out: str | Path) -> Path:
    """Lay out, write and close a matplotlib figure; returns its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_curves(runs: dict[str, str | Path], out: str | Path) -> Path:
    """One panel: every run's held-out success against env steps (``draw_curves``). ``runs``: {label: run
    folder}; for more than a handful of runs, ``plot_curve_panels`` stays readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    draw_curves(ax, runs)
    ax.set_xlabel("env steps")
    ax.set_ylabel("held-out success rate")
    return save_figure(fig, out)


def plot_curve_panels(groups: dict[str, dict[str, str | Path]], out: str | Path, ncols: int = 4) -> Path:
    """Small multiples: one panel per group (a row of the paper's table, say), its runs (the training
    seeds) drawn as ``draw_curves`` does, on shared axes. ``groups``: {panel title: {label: run folder}}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not groups:
        raise ValueError("plot_curve_panels: no runs to plot")
    ncols = min(ncols, len(groups))
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), dpi=100, sharex=True, sharey=True,
                             squeeze=False)
    for ax, (title, runs) in zip(axes.flat, groups.items()):
        draw_curves(ax, runs, legend_size=5)
        ax.set_title(title, fontsize=8)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(lambda x, _: f"{x / 1000:.0f}k")  # full step counts overlap in narrow panels
    for ax in axes[:, 0]:
        ax.set_ylabel("held-out success")
    fig.suptitle("held-out success during training (solid: mean action, dashed: sampled)", fontsize=9)
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders, or label=folder")
    ap.add_argument("--out", default="curves.png")
    args = ap.parse_args(argv)
    runs = dict(r.split("=", 1) if "=" in r else (Path(r).name, r) for r in args.runs)
    print(plot_curves(runs, args.out))


if __name__ == "__main__":
    main()
