"""Rollouts of several trained policies on the same held-out seeds, side by side in one GIF per seed.

    python -m mmrep.policy_compare runs/paper/fused_insertion_s0 runs/paper/no_haptics_s0 \\
        --setting clean --out benchmarks/results/paper/compare

Each GIF shows, per policy, the camera view (titled with the policy's name, then its outcome) above
its wrist force magnitude (N), frame by frame on the same control step; a policy whose episode has
ended holds its last frame. By default the seeds are chosen from the policies' own evaluations
(``<run>/eval/results.json`` or the rows a running evaluation has kept): the first seed on which
their outcomes differ (up to ``--count``), else the first evaluation seed, so the pictures show
where the representations part ways. Episodes are seeded exactly as ``mmrep policy eval`` seeds them
(``mmrep.policy.run_episodes``), so each panel replays that evaluation's episode.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmrep.policy import load_policy, run_episodes
from mmrep.policy_eval import PARTIAL, Frames, kept_entries, panels_gif, policy_file
from sim.rl_env import CLOSED_LOOP


def evaluated_outcomes(run: Path, setting: str, mode: str) -> dict[int, bool]:
    """{seed: success} of ``run``'s own evaluation (``eval/results.json``, or the rows kept so far by
    a running one) in ``setting`` and ``mode``, on the policy's trained shape; {} when there is none."""
    folder = policy_file(run).parent / "eval"
    if (folder / "results.json").exists():
        rows = json.loads((folder / "results.json").read_text())["results"]
    else:
        rows = [entry["row"] for entry in kept_entries(folder / PARTIAL)]
    for row in rows:
        if row["setting"] == setting and row["mode"] == mode:
            return {int(e["seed"]): bool(e["success"]) for e in row.get("episode_results", [])}
    return {}


def differing_seeds(outcomes: list[dict[int, bool]], count: int) -> list[int]:
    """Up to ``count`` seeds, in order, that every policy was evaluated on and on which their outcomes
    differ; [] when they agree everywhere (or share no seed)."""
    common = sorted(set.intersection(*(set(o) for o in outcomes))) if outcomes else []
    return [s for s in common if len({o[s] for o in outcomes}) > 1][:count]


def record_episodes(run: Path, seeds: list[int], setting: str, deterministic: bool) -> list[tuple[Frames, dict]]:
    """The policy in ``run``'s evaluation episode on each seed (the policy and env built once): frames
    and result per seed."""
    env_over, perturbations = CLOSED_LOOP[setting]
    model, venv, _, rms = load_policy(policy_file(run), env_over, list(perturbations), render=True)
    try:
        episodes = []
        for seed in seeds:
            frames: Frames = []
            episodes.append((frames, run_episodes(model, venv, [seed], deterministic, rms, frames)[0]))
    finally:
        venv.close()
    return episodes


def compare(runs: list[Path], names: list[str], setting: str, mode: str, seeds: list[int] | None, count: int,
            first_seed: int, out: Path) -> list[dict]:
    """Write one side-by-side GIF per seed into ``out`` and ``compare.json`` (each policy's result per
    seed, and how the seeds were chosen); returns the per-seed entries."""
    if setting not in CLOSED_LOOP:
        raise ValueError(f"--setting {setting!r}: valid {sorted(CLOSED_LOOP)}")
    how = "given"
    if not seeds:
        outcomes = [evaluated_outcomes(r, setting, mode) for r in runs]
        seeds = differing_seeds(outcomes, count) if all(outcomes) else []
        how = "outcomes differ in the runs' evaluations" if seeds else "first evaluation seed"
        seeds = seeds or [first_seed]
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    recorded = [record_episodes(run, seeds, setting, mode == "deterministic") for run in runs]
    for k, seed in enumerate(seeds):
        panels, results = [], {}
        for name, episodes in zip(names, recorded):
            frames, result = episodes[k]
            panels.append((name, frames, result["success"]))
            results[name] = result
        gif = f"compare_{setting}_{mode}_{seed}.gif"
        panels_gif(panels, out / gif)
        entries.append({"seed": seed, "gif": gif, "results": results})
        print(f"seed {seed}: " + ", ".join(f"{n} {'in' if r['success'] else 'failed'}" for n, r in results.items())
              + f" -> {out / gif}")
    (out / "compare.json").write_text(json.dumps(
        {"runs": [str(r) for r in runs], "names": names, "setting": setting, "mode": mode,
         "seeds_chosen_by": how, "episodes": entries}, indent=2))
    return entries


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mmrep.policy_compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="policy run folders (or policy.pt files)")
    ap.add_argument("--names", nargs="+", help="panel titles (default: the run folders' names)")
    ap.add_argument("--setting", default="clean", help=f"closed-loop setting: {', '.join(CLOSED_LOOP)}")
    ap.add_argument("--mode", default="deterministic", choices=["deterministic", "stochastic"])
    ap.add_argument("--seeds", nargs="+", type=int, help="evaluation seeds (default: chosen, module doc)")
    ap.add_argument("--count", type=int, default=2, help="seeds to choose where outcomes differ")
    ap.add_argument("--first-seed", type=int, default=2_000_000, help="mmrep policy eval's first seed")
    ap.add_argument("--out", type=Path, default=Path("outputs/compare"))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    names = args.names or [policy_file(r).parent.name for r in args.runs]
    if len(names) != len(args.runs):
        ap.error(f"--names: {len(names)} names for {len(args.runs)} runs")
    import torch

    torch.set_num_threads(args.threads)
    try:
        compare(args.runs, names, args.setting, args.mode, args.seeds, args.count, args.first_seed, args.out)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"mmrep.policy_compare: error: {err}") from err


if __name__ == "__main__":
    main()
