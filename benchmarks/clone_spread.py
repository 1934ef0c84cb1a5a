"""How much of a cloned policy's success is the fit's luck: refit the clone of one run's demonstrations.

A run trained with ``demos.replay_steps`` keeps its demonstrations (``demonstrations.npz``). This
script fits ``--fits`` fresh policies to them, each from its own initialisation and minibatch order
(torch seeds 0..fits-1; same data, same normaliser statistics, same ``demos`` settings as the run),
and evaluates each with the mean action on ``--episodes`` seeds from ``--seed`` (default: the periodic
evaluation's 30 seeds). The spread between fits on one set of demonstrations, beside the spread
between training seeds (each its own demonstrations), says whether the clone's seed-to-seed variance
comes from the fit or from the data. Writes JSON.

    python benchmarks/clone_spread.py runs/se/rep50_s2 --fits 5 \
        --out benchmarks/results/sample_efficiency/clone_spread_s2.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import yaml

from mmrep.config import DemoConfig
from mmrep.policy import DEMONSTRATIONS_FILE, build_model, load_policy, normalize_obs, run_episodes, wilson_interval
from mmrep.rl.demos import clone, load_demonstrations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a policy run folder holding demonstrations.npz and policy.pt")
    ap.add_argument("--fits", type=int, default=5, help="clones to fit (default 5)")
    ap.add_argument("--episodes", type=int, default=30, help="evaluation episodes per clone (default 30)")
    ap.add_argument("--seed", type=int, default=1_000_000, help="first evaluation seed (default: the periodic ones)")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="demos settings to fit with instead of the run's, e.g. obs_noise=0.1 average_last=10")
    ap.add_argument("--out", type=Path, required=True, help="JSON to write")
    args = ap.parse_args()

    if not (args.run / DEMONSTRATIONS_FILE).exists():
        raise SystemExit(f"{args.run} holds no {DEMONSTRATIONS_FILE}: only runs trained with demos.replay_steps "
                         "keep their demonstrations")
    changed = {}
    for item in args.set:  # checked before any env is built
        name, _, value = item.partition("=")
        if name not in {f.name for f in fields(DemoConfig)}:
            raise SystemExit(f"--set {item}: demos has no field {name!r}")
        changed[name] = yaml.safe_load(value)  # 10, 0.3, null: as a config would read them
    demos = load_demonstrations(args.run / DEMONSTRATIONS_FILE)
    _, venv, cfg, rms = load_policy(args.run / "policy.pt")
    obs = normalize_obs(demos.obs, rms)
    settings = replace(cfg.demos, **changed)
    seeds = list(range(args.seed, args.seed + args.episodes))
    fits = []
    try:
        for k in range(args.fits):
            t0 = time.time()
            model = build_model(replace(cfg, seed=k), venv)
            fit = clone(model, obs, demos, settings, seed=k)
            episodes = run_episodes(model, venv, seeds, deterministic=True, obs_rms=rms)
            wins = sum(e["success"] for e in episodes)
            fits.append({"torch_seed": k, "success_rate": wins / len(episodes),
                         "success_ci95": list(wilson_interval(wins, len(episodes))), "nll_after": fit["nll_after"],
                         "seconds": time.time() - t0})
            print(f"fit {k}: success {wins}/{len(episodes)}, nll {fit['nll_after']:.3f}", flush=True)
    finally:
        venv.close()
    rates = [f["success_rate"] for f in fits]
    typed = [str(args.run), f"--fits {args.fits}", f"--episodes {args.episodes}",
             *(["--set", *args.set] if args.set else []), f"--out {args.out}"]
    record = {"run": str(args.run), "demos_changed": changed, "samples": int(len(demos.obs)),
              "episodes": args.episodes, "first_seed": args.seed, "fits": fits, "min": min(rates),
              "median": float(np.median(rates)), "max": max(rates),
              "command": "python benchmarks/clone_spread.py " + " ".join(typed)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}: success over {args.fits} fits {min(rates):.2f}-{max(rates):.2f}, median "
          f"{record['median']:.2f}")


if __name__ == "__main__":
    main()
