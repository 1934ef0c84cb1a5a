"""Sample efficiency of two groups of policy runs: env steps and wall-clock until the periodic held-out
success first reaches a threshold, the learning curves side by side, and the held-out confirmation.

Each run is a ``mmrep policy train`` folder with its ``eval.jsonl`` (periodic evaluations on seeds
``eval_seed + k``, mean action) and, where evaluated, ``eval/results.json`` (``mmrep policy eval``,
100 held-out seeds from 2,000,000, disjoint from the periodic ones): the confirmation reads its clean,
deterministic row. E.g. the fused row's PPO against the same row under SAC:

    python benchmarks/sample_efficiency.py \
        --before benchmarks/results/paper/runs/fused_insertion_s{0,1,2} \
        --after benchmarks/results/sample_efficiency/runs/sac_s{0,1,2} \
        --out benchmarks/results/sample_efficiency

Writes ``summary.json`` (per run: the curve, the first step at the threshold, the training wall minutes
there with the periodic evaluations' own time taken out, the final policy's held-out success and, where
``best/eval`` exists, that of the policy ``keep_best`` kept (the final policy's, where the kept one is
the final one: ``kept_is_final``); per group: medians and the pooled held-out
success; the ratios after/before, and ``reached_at_half_budget``: how many runs of each group are at the
threshold by half the baseline's budget and by all of it, see ``reached_at_half_budget``;
``held_out_by_seed``: the final policies compared with each training seed as the unit, see
``held_out_comparison``; ``held_out_kept_by_seed``: the same of the kept policies, what each run
delivers; with ``--base-loop``, ``minutes_at_base_loop``: the wall minutes against an older tree's slower
loop, see ``at_base_loop``) and ``curves.png`` (success against env steps and against wall minutes).
A run that never reaches the threshold counts as its budget's end, marked ``reached: false`` (so a
median over such runs is a lower bound); ``median_*_upper`` counts it as never reaching (the upper
bound, ``median_upper``), and ``*_after_over_before_at_most`` divides the candidate's upper bound by the
baseline's lower one: the ratio the runs guarantee.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

from mmrep.policy import wilson_interval
from mmrep.policy_curves import read_evaluations, save_figure


def learning_minutes(rows: list[dict[str, Any]], index: int) -> float | None:
    """Training wall minutes before periodic evaluation ``index``, the earlier evaluations' own time
    taken out (they are measurement, not learning). None for runs written before ``eval.jsonl`` carried
    ``train_seconds``."""
    row = rows[index]
    if row.get("train_seconds") is None:
        return None
    evaluating = sum(r.get("seconds") or 0.0 for r in rows[:index])
    return (row["train_seconds"] - evaluating) / 60


def cpu_minutes(rows: list[dict[str, Any]], index: int) -> float | None:
    """CPU minutes (the training process and its env workers) before periodic evaluation ``index``, the
    earlier periodic evaluations included (they run in the training process): on a shared machine this
    holds where wall minutes follow the load, and two groups with the same evaluation schedule compare
    on it. None for runs written before ``eval.jsonl`` carried ``cpu_seconds``."""
    cpu = rows[index].get("cpu_seconds")
    return None if cpu is None else cpu / 60


def held_out_final(run: Path, policy: str = "") -> dict[str, Any] | None:
    """The final policy's clean, deterministic row of ``run/eval/results.json`` (held-out seeds):
    successes, episodes, rate; None where the run has not been evaluated. For a run whose budget ends
    where its curve reaches the threshold, this is the confirmation of that point. ``policy="best"``:
    the same of the policy ``keep_best`` kept (``run/best/eval/results.json``)."""
    path = run / policy / "eval" / "results.json"
    if not path.exists():
        return None
    for r in json.loads(path.read_text())["results"]:
        if r["setting"] == "clean" and r["mode"] == "deterministic":
            wins = sum(e["success"] for e in r["episode_results"])
            return {"successes": wins, "episodes": len(r["episode_results"]), "rate": r["success_rate"]}
    return None


def kept_is_final(rows: list[dict[str, Any]], config: dict[str, Any]) -> bool:
    """Whether the policy ``keep_best`` kept is the final one: the run kept policies and its last periodic
    evaluation ranks at least as high as every earlier one (``keep_best`` keeps ties' later policy). Then
    the final policy's held-out evaluation is the kept one's, for a run whose ``best/`` was not evaluated."""
    from mmrep.policy import selection_score

    return bool(config.get("keep_best")) and bool(rows) and all(
        selection_score(rows[-1]) >= selection_score(r) for r in rows)


def run_summary(run: Path, threshold: float) -> dict[str, Any]:
    """One run's curve, its first step at ``threshold``, and the held-out success of its final policy and
    of the one ``keep_best`` kept."""
    rows = read_evaluations(run)
    config = json.loads((run / "config.json").read_text())
    kept = held_out_final(run, "best")
    if kept is None and kept_is_final(rows, config):
        kept = held_out_final(run)
    first = next((i for i, r in enumerate(rows) if r["success_rate"] >= threshold), None)
    at = rows[first] if first is not None else rows[-1]
    return {
        "run": str(run), "seed": config.get("seed"), "algo": config["algo"]["name"],
        "algo_params": config["algo"]["params"],
        "total_steps": config["total_steps"], "periodic_episodes": rows[0].get("episodes"),
        "curve": [{"timesteps": r["timesteps"], "success_rate": r["success_rate"], "episodes": r.get("episodes"),
                   "learning_minutes": learning_minutes(rows, i)} for i, r in enumerate(rows)],
        "reached": first is not None,
        "steps_to_threshold": int(at["timesteps"]),
        "minutes_to_threshold": learning_minutes(rows, first if first is not None else len(rows) - 1),
        "cpu_minutes_to_threshold": cpu_minutes(rows, first if first is not None else len(rows) - 1),
        "final_periodic": rows[-1]["success_rate"],
        "cpu_hours": (rows[-1]["cpu_seconds"] / 3600) if rows[-1].get("cpu_seconds") else None,
        "held_out_final": held_out_final(run),
        "held_out_kept": kept,
    }


def median_upper(runs: list[dict[str, Any]], key: str) -> float | None:
    """An upper bound on the median of ``key`` (env steps, wall or CPU minutes to the threshold): the
    median with every run that never reached the threshold counted as never reaching it. The median of
    the recorded values (such a run at its budget's end) is the lower bound; where the two are equal the
    median is exact. None (no bound) where half the runs or more never reached it."""
    values = [r[key] if r["reached"] else math.inf for r in runs]
    if any(v is None for v in values):
        return None
    upper = statistics.median(values)
    return None if math.isinf(upper) else upper


def median_is_lower_bound(runs: list[dict[str, Any]]) -> bool:
    """Whether the median of env steps to the threshold is only a lower bound: a run that never reached it
    counts as its budget's end, so the median is exact only where its upper bound (``median_upper``)
    equals it."""
    return median_upper(runs, "steps_to_threshold") != statistics.median(r["steps_to_threshold"] for r in runs)


def group_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over a group's runs and the final policies' pooled held-out success (Wilson 95% interval)."""
    minutes = [r["minutes_to_threshold"] for r in runs if r["minutes_to_threshold"] is not None]
    cpu = [r["cpu_minutes_to_threshold"] for r in runs if r["cpu_minutes_to_threshold"] is not None]
    done = [r["held_out_final"] for r in runs if r["held_out_final"]]
    wins, n = sum(c["successes"] for c in done), sum(c["episodes"] for c in done)
    kept = [r["held_out_kept"] for r in runs if r.get("held_out_kept")]
    kept_wins, kept_n = sum(c["successes"] for c in kept), sum(c["episodes"] for c in kept)
    return {
        "runs": len(runs), "reached": sum(r["reached"] for r in runs),
        "median_steps_to_threshold": statistics.median(r["steps_to_threshold"] for r in runs),
        "median_is_lower_bound": median_is_lower_bound(runs),
        "median_steps_upper": median_upper(runs, "steps_to_threshold"),
        # over runs that did not all reach the threshold, a lower bound: the upper one is beside it
        "median_minutes_to_threshold": statistics.median(minutes) if len(minutes) == len(runs) else None,
        "median_minutes_upper": median_upper(runs, "minutes_to_threshold"),
        "median_cpu_minutes_to_threshold": statistics.median(cpu) if len(cpu) == len(runs) else None,
        "median_cpu_minutes_upper": median_upper(runs, "cpu_minutes_to_threshold"),
        "held_out_pooled": wins / n if n else None,
        "held_out_ci95": wilson_interval(wins, n) if n else None,
        "held_out_per_run": [c["rate"] for c in done],
        # the policies keep_best kept (evaluated where the run's best/ has an eval/)
        "held_out_kept_pooled": kept_wins / kept_n if kept_n else None,
        "held_out_kept_ci95": wilson_interval(kept_wins, kept_n) if kept_n else None,
        "held_out_kept_per_run": [c["rate"] for c in kept],
    }


def reached_by(runs: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """How many of ``runs`` reached the threshold by ``steps`` env steps (their first evaluation at it at or
    before ``steps``): ``{"steps", "reached", "runs", "share"}``."""
    k = sum(r["reached"] and r["steps_to_threshold"] <= steps for r in runs)
    return {"steps": int(steps), "reached": k, "runs": len(runs), "share": k / len(runs)}


def reached_at_half_budget(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """The share of runs at the threshold by half the baseline's budget against the baseline's share by its
    whole budget. A median from runs that stop short of the threshold is a bound that one seed more can
    move past the budget; the shares hold every run, so "as many runs at 90% by half the env steps" can
    be read without the median. ``after_by_half`` at least ``before_by_budget`` is what half the env steps
    asks for, read on the runs' shares."""
    budget = max(r["total_steps"] for r in before)
    return {"before_by_budget": reached_by(before, budget), "before_by_half": reached_by(before, budget // 2),
            "after_by_half": reached_by(after, budget // 2)}


def at_base_loop(before: list[dict[str, Any]], group: dict[str, Any], speedup: dict[str, Any],
                 after_minutes_upper: float | None) -> dict[str, Any] | None:
    """The baseline's median wall minutes to the threshold on the loop of an older tree, and the
    candidate's against it: a target set against that tree counts its loop, which this tree runs
    ``speedup["ratio_median"]`` times faster (``benchmarks/policy_speedup.py``, both trees side by side).
    None where a before run has no minutes or the candidate's median has no upper bound."""
    # A lower bound: the baseline's runs ran on this tree's loop, some beside other jobs; the least loaded
    # one's pace (learning minutes per env step at its last evaluation, the group's smallest) times the
    # group's median env steps (itself a lower bound where runs stopped short) times the ratio, so
    # after_over_base_at_most is a ratio the runs guarantee.
    last = [r["curve"][-1] for r in before]
    if not last or any(p["learning_minutes"] is None for p in last) or after_minutes_upper is None:
        return None
    paces = [p["learning_minutes"] / p["timesteps"] for p in last]
    ratio = speedup["ratio_median"]
    minutes = min(paces) * group["median_steps_to_threshold"] * ratio
    return {"base": speedup["base"], "loop_speedup": ratio, "speedup_options": speedup.get("new_options"),
            "before_fastest_minutes_per_100k": min(paces) * 100_000,
            "base_median_minutes_at_least": minutes,
            "after_over_base_at_most": after_minutes_upper / minutes}


def held_out_comparison(before: list[dict[str, Any]], after: list[dict[str, Any]], reps: int = 10_000,
                        seed: int = 0, policy: str = "held_out_final") -> dict[str, Any] | None:
    """The final policies' held-out success compared with each training seed as the unit: the pooled
    Wilson intervals count episodes and so leave out how much runs differ from seed to seed (0.37-0.97
    on one row), which dominates here. ``difference``: the mean per-run rate after minus before, with a
    95% interval from a bootstrap that resamples runs within each group (``reps`` draws, seeded); and,
    where ``rliable`` is installed, each group's interquartile mean over runs with rliable's stratified
    bootstrap interval (``paper_summary.iqm_over_seeds``). None until every run of both groups has its
    held-out evaluation, so that no comparison is made on part of a group. ``policy``: "held_out_final"
    (the final policies) or "held_out_kept" (those ``keep_best`` kept: what each run delivers)."""
    import numpy as np

    if not all(r[policy] for r in before + after):
        return None
    # keyed by the full path: two runs of one folder name from different places stay two seeds
    rates = {name: {r["run"]: r[policy]["rate"] for r in runs}
             for name, runs in (("before", before), ("after", after))}
    b, a = (np.array(list(rates[k].values())) for k in ("before", "after"))
    rng = np.random.default_rng(seed)
    draws = rng.choice(a, (reps, len(a))).mean(axis=1) - rng.choice(b, (reps, len(b))).mean(axis=1)
    result: dict[str, Any] = {"difference": float(a.mean() - b.mean()),
                              "difference_ci95": [float(q) for q in np.percentile(draws, [2.5, 97.5])],
                              "difference_reps": reps, "runs": {k: len(v) for k, v in rates.items()}}
    paired = paired_by_seed(before, after, reps, seed, policy)
    if paired:
        result["paired"] = paired
    from paper_summary import iqm_over_seeds  # the sibling script (benchmarks/ is on sys.path when run)

    iqm = iqm_over_seeds({name: {"cells": {"held_out": {"seeds": seeds}}} for name, seeds in rates.items()})
    if iqm:
        result["iqm"] = {name: cells["held_out"] for name, cells in iqm.items()}
    return result


def paired_by_seed(before: list[dict[str, Any]], after: list[dict[str, Any]], reps: int = 10_000,
                   seed: int = 0, policy: str = "held_out_final") -> dict[str, Any] | None:
    """Where both groups ran the same training seeds (each once), the final policies' held-out success
    (or that of ``policy``, as ``held_out_comparison``) compared seed by seed: two settings of one seed
    share what the seed draws (the demonstrations, the first resets), so the per-seed differences leave
    out part of the seed-to-seed spread the unpaired comparison carries. ``difference``: their mean, with
    a 95% bootstrap interval over seeds; how many seeds read higher, lower and the same after. None where
    the seeds differ or repeat."""
    import numpy as np

    seeds = [[r.get("seed") for r in runs] for runs in (before, after)]
    if None in seeds[0] + seeds[1] or len(set(seeds[0])) != len(seeds[0]) or set(seeds[0]) != set(seeds[1]):
        return None
    rate = {name: {r["seed"]: r[policy]["rate"] for r in runs}
            for name, runs in (("before", before), ("after", after))}
    order = sorted(rate["before"])
    d = np.array([rate["after"][s] - rate["before"][s] for s in order])
    draws = np.random.default_rng(seed).choice(d, (reps, len(d))).mean(axis=1)
    return {"seeds": order, "difference": float(d.mean()),
            "difference_ci95": [float(q) for q in np.percentile(draws, [2.5, 97.5])],
            "higher": int((d > 0).sum()), "lower": int((d < 0).sum()), "same": int((d == 0).sum())}


def plot(groups: dict[str, list[dict[str, Any]]], threshold: float, out: Path) -> Path:
    """Success against env steps (left) and against training wall minutes (right), one line per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for colour, (label, runs) in zip(("C0", "C1"), groups.items()):
        for i, run in enumerate(runs):
            alpha = 0.5 + 0.5 * i / max(len(runs) - 1, 1)  # any number of runs, each its own shade
            steps = [p["timesteps"] / 1000 for p in run["curve"]]
            rates = [p["success_rate"] for p in run["curve"]]
            name = f"{label}: {Path(run['run']).name} ({run['periodic_episodes']} periodic seeds)"
            axes[0].plot(steps, rates, "-o", ms=3, color=colour, alpha=alpha, label=name)
            minutes = [p["learning_minutes"] for p in run["curve"]]
            if all(m is not None for m in minutes):
                axes[1].plot(minutes, rates, "-o", ms=3, color=colour, alpha=alpha, label=name)
    for ax, xlabel in zip(axes, ("env steps (thousands)", "training wall minutes (periodic evaluations excluded)")):
        ax.axhline(threshold, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("periodic held-out success, mean action")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=6, loc="lower right")
    return save_figure(fig, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", nargs="+", type=Path, required=True, help="run folders of the baseline")
    ap.add_argument("--after", nargs="+", type=Path, required=True, help="run folders of the candidate")
    ap.add_argument("--threshold", type=float, default=0.9, help="periodic success to reach (default 0.9)")
    ap.add_argument("--out", type=Path, required=True, help="folder for summary.json and curves.png")
    ap.add_argument("--base-loop", type=Path, default=None,
                    help="a benchmarks/policy_speedup.py JSON: also compare the after group's wall minutes with the "
                         "before group's on that JSON's base tree (its loop that many times slower)")
    ap.add_argument("--command", default=None, help="the commands that made the runs, kept in the JSON")
    args = ap.parse_args()
    for run in args.before + args.after:
        if not (run / "eval.jsonl").exists():
            raise SystemExit(f"{run}: no eval.jsonl (a `mmrep policy train` run with eval_episodes > 0?)")
    groups = {"before": [run_summary(r, args.threshold) for r in args.before],
              "after": [run_summary(r, args.threshold) for r in args.after]}
    summary = {name: group_summary(runs) for name, runs in groups.items()}
    b, a = summary["before"], summary["after"]
    ratios = {"steps_after_over_before": a["median_steps_to_threshold"] / b["median_steps_to_threshold"]}
    # a run that never reached the threshold counts its last evaluation: the ratio is then a bound
    ratios["every_run_reached"] = a["reached"] == a["runs"] and b["reached"] == b["runs"]
    ratios["steps_ratio_is"] = {(False, False): "exact", (True, False): "a lower bound",
                                (False, True): "an upper bound", (True, True): "unknown (both medians are bounds)"}[
        (a["median_is_lower_bound"], b["median_is_lower_bound"])]
    if a["median_minutes_to_threshold"] and b["median_minutes_to_threshold"]:
        ratios["minutes_after_over_before"] = a["median_minutes_to_threshold"] / b["median_minutes_to_threshold"]
    if a["median_cpu_minutes_to_threshold"] and b["median_cpu_minutes_to_threshold"]:
        ratios["cpu_minutes_after_over_before"] = (a["median_cpu_minutes_to_threshold"]
                                                   / b["median_cpu_minutes_to_threshold"])
    # the candidate's median at most its upper bound, the baseline's at least its recorded one
    for name, upper, lower in (("steps", "median_steps_upper", "median_steps_to_threshold"),
                               ("minutes", "median_minutes_upper", "median_minutes_to_threshold"),
                               ("cpu_minutes", "median_cpu_minutes_upper", "median_cpu_minutes_to_threshold")):
        if a[upper] is not None and b[lower]:
            ratios[f"{name}_after_over_before_at_most"] = a[upper] / b[lower]
    ratios["reached_at_half_budget"] = reached_at_half_budget(groups["before"], groups["after"])
    if args.base_loop:
        speedup = json.loads(args.base_loop.read_text())
        missing = [k for k in ("ratio_median", "base") if k not in speedup]
        if missing:
            raise SystemExit(f"--base-loop {args.base_loop}: not a benchmarks/policy_speedup.py JSON "
                             f"(no {missing[0]!r})")
        base = at_base_loop(groups["before"], b, speedup, a["median_minutes_upper"])
        if base is None:
            raise SystemExit(f"--base-loop {args.base_loop}: a before run has no learning minutes, or the "
                             "after group's median is not reached (no upper bound to compare)")
        ratios["minutes_at_base_loop"] = base
    comparison = held_out_comparison(groups["before"], groups["after"])
    kept_comparison = held_out_comparison(groups["before"], groups["after"], policy="held_out_kept")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"threshold": args.threshold, "groups": summary, "ratios": ratios, "held_out_by_seed": comparison,
              "held_out_kept_by_seed": kept_comparison, "runs": groups, "command": args.command}
    (args.out / "summary.json").write_text(json.dumps(result, indent=2))
    plot(groups, args.threshold, args.out / "curves.png")
    for name, g in summary.items():
        conf = "" if g["held_out_pooled"] is None else (
            f"; held-out clean {g['held_out_pooled']:.2f} ({g['held_out_ci95'][0]:.2f}-{g['held_out_ci95'][1]:.2f})")
        if g["held_out_kept_pooled"] is not None:
            conf += (f"; kept policies {g['held_out_kept_pooled']:.2f} "
                     f"({g['held_out_kept_ci95'][0]:.2f}-{g['held_out_kept_ci95'][1]:.2f})")
        minutes = ""
        for key, unit in (("minutes", "min"), ("cpu_minutes", "CPU min")):
            low, up = g[f"median_{key}_to_threshold"], g[f"median_{key}_upper"]
            if low is None:
                continue
            span = f"{low:.1f}" if up == low else f"{low:.1f} to {up:.1f}" if up is not None else f"at least {low:.1f}"
            minutes += f", {span} {unit}"
        bound = "at least " if g["median_is_lower_bound"] else ""
        print(f"{name}: {g['reached']}/{g['runs']} runs reach {args.threshold:.0%}; median {bound}"
              f"{g['median_steps_to_threshold']:,} env steps{minutes}{conf}")
    for which, result in (("final", comparison), ("kept", kept_comparison)):
        if not result:
            continue
        lo, hi = result["difference_ci95"]
        line = (f"held-out, {which} policies, after - before, seeds as the unit ({result['runs']['after']} and "
                f"{result['runs']['before']} runs): {result['difference']:+.2f} ({lo:+.2f} to {hi:+.2f})")
        if "paired" in result:
            p = result["paired"]
            line += (f"; by seed {p['difference']:+.2f} ({p['difference_ci95'][0]:+.2f} to "
                     f"{p['difference_ci95'][1]:+.2f}), {p['higher']} higher, {p['lower']} lower")
        for name, cell in result.get("iqm", {}).items():
            line += f"; {name} IQM {cell['iqm']:.2f} ({cell['ci95'][0]:.2f}-{cell['ci95'][1]:.2f})"
        print(line)
    print("ratios:", {k: round(v, 3) if isinstance(v, float) else v for k, v in ratios.items()
                      if k not in ("reached_at_half_budget", "minutes_at_base_loop")})
    if "minutes_at_base_loop" in ratios:
        base = ratios["minutes_at_base_loop"]
        print(f"wall minutes against the tree {base['base']} (its loop {base['loop_speedup']:.2f}x slower): "
              f"before at least {base['base_median_minutes_at_least']:.1f}, after over before at most "
              f"{base['after_over_base_at_most']:.2f}")
    print("runs at the threshold: " + "; ".join(
        f"{name.replace('_', ' ')} ({c['steps']:,} env steps) {c['reached']}/{c['runs']}"
        for name, c in ratios["reached_at_half_budget"].items()))
    print(f"wrote {args.out / 'summary.json'} and {args.out / 'curves.png'}")


if __name__ == "__main__":
    main()
