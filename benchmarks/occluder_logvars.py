"""Does the reliability signal see the occluder? Each camera expert's mean log-variance on clean views
and on views behind the occluder (expert rollouts in the ``occluder_after_contact`` setting: the same
episodes, clean until first contact), and how often the encoder's flags fire on each, one-sided (upper
threshold only) and two-sided (``mmrep.reliability``).

    python benchmarks/occluder_logvars.py benchmarks/results/insertion/encoders/insertion.pt \
        --episodes 8 --out benchmarks/results/camera_memory/occluder_logvars.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mmrep.encoder import load_encoder
from mmrep.reliability import Reliability
from sim.modalities import camera_modalities
from sim.rl_env import CLOSED_LOOP, make_rl_env
from sim.task import make_expert

QUANTILES = (0.001, 0.01, 0.05, 0.5, 0.95, 0.99)


def rollout_logvars(encoder_path: str, episodes: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({modality: (N,) mean log-variance}, (N,) bool occluder visible) over every step of
    ``episodes`` expert episodes under ``occluder_after_contact``."""
    enc = load_encoder(encoder_path)
    env = make_rl_env(CLOSED_LOOP["occluder_after_contact"][0])
    base = env.unwrapped
    expert = make_expert("expert", base.cfg)
    logvars: dict[str, list[float]] = {}
    visible: list[bool] = []
    try:
        for k in range(episodes):
            obs, info = env.reset(seed=seed + k)
            expert.reset(info, seed=seed + k)
            done = False
            while not done:
                for m, v in enc.expert_logvars({m: obs[m] for m in enc.cfg.modalities}).items():
                    logvars.setdefault(m, []).append(float(v))
                visible.append(bool(base.occluder.visible))
                obs, _, terminated, truncated, info = env.step(expert.act(obs, info))
                done = terminated or truncated
    finally:
        env.close()
    return {m: np.asarray(v) for m, v in logvars.items()}, np.asarray(visible)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("encoder", help="an encoder.pt of the product of experts with reliability thresholds")
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--seed", type=int, default=500)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/occluder_logvars.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    logvars, visible = rollout_logvars(args.encoder, args.episodes, args.seed)
    rel = load_encoder(args.encoder).reliability
    if rel is None:
        raise SystemExit(f"{args.encoder}: no reliability thresholds (python -m mmrep.reliability ENCODER DATA)")
    out = {"benchmark": "occluder_logvars", "encoder": args.encoder, "episodes": args.episodes,
           "steps": {"clean": int((~visible).sum()), "occluded": int(visible.sum())},
           "thresholds": {"upper": rel.thresholds, "low": rel.low}, "modalities": {}}
    # the encoder's own flag rule, two-sided as stored and one-sided (its upper thresholds alone)
    rules = {"one_sided": Reliability(rel.thresholds), "two_sided": rel}
    flags = {name: {m: f.numpy() for m, f in r.flags({m: torch.as_tensor(v) for m, v in logvars.items()}).items()}
             for name, r in rules.items()}
    for m, lv in logvars.items():
        row = {}
        for name, sel in (("clean", ~visible), ("occluded", visible)):
            row[name] = {"quantiles": dict(zip(map(str, QUANTILES), np.quantile(lv[sel], QUANTILES).round(3).tolist())),
                         **{f"flagged_{k}": float(f[m][sel].mean()) if m in f else 0.0 for k, f in flags.items()}}
        out["modalities"][m] = row
    camera = list(camera_modalities(flags["two_sided"]))
    for name, sel in (("clean", ~visible), ("occluded", visible)):
        either = np.any([flags["two_sided"][m][sel] for m in camera], axis=0)
        out.setdefault("camera_flagged_two_sided", {})[name] = float(either.mean())
    out["seconds"] = time.time() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    for m, row in out["modalities"].items():
        print(f"{m:8s} median clean {row['clean']['quantiles']['0.5']:6.2f} occluded "
              f"{row['occluded']['quantiles']['0.5']:6.2f} | flagged one-sided {row['clean']['flagged_one_sided']:.2f}"
              f"/{row['occluded']['flagged_one_sided']:.2f}, two-sided {row['clean']['flagged_two_sided']:.2f}"
              f"/{row['occluded']['flagged_two_sided']:.2f} (clean/occluded)")
    print(f"camera flagged (two-sided): {out['camera_flagged_two_sided']}; wrote {args.out}")


if __name__ == "__main__":
    main()
