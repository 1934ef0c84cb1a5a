"""Where a policy lands: how far from the hole's axis the peg first touches the block, and how many
steps it takes from there to insert. A policy that lands within the hole's capture range needs no
search after contact (so nothing for touch to find); one that lands a few millimetres off has to search.

    python benchmarks/landing_offsets.py runs/paper/fused_smooth_touch_s0 runs/paper/no_haptics_smooth_touch_s0 \
        --episodes 50 --out benchmarks/results/touch_task/landing_offsets.json

Held-out seeds from 2,000,000 (as ``mmrep policy eval``), the mean action, the policy's own setting
(``--camera-target-error M`` adds a per-episode camera calibration error). The first contact is the
first control step in which the simulator reports the peg touching the block (``info["peg_block_contact"]``;
the wrist's reading cannot tell, it also carries the arm's acceleration); the offset is
``info["hole_distance"]`` at the end of that step (mm, the tip from the hole's axis).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mmrep.policy import load_policy, run_episodes


def landing(model, venv, seed: int, obs_rms) -> dict:
    """One deterministic episode (``mmrep.policy.run_episodes``): offset at first contact (mm), steps to
    it and after it, success."""
    first: dict = {}
    steps = [0]

    def watch(info: dict) -> None:
        steps[0] += 1
        if not first and info.get("peg_block_contact", False):
            first.update(step=steps[0], offset=1000 * float(info["hole_distance"]))

    episode, = run_episodes(model, venv, [seed], True, obs_rms, on_step=watch)
    success, n = episode["success"], episode["steps"]
    return {"seed": seed, "success": success, "steps": n, "first_contact_step": first.get("step"),
            "offset_at_contact_mm": first.get("offset"),
            "steps_after_contact": (n - first["step"]) if success and first else None}


def percentiles(a: np.ndarray) -> dict | None:
    """10th, 50th and 90th percentiles of ``a`` (None when empty)."""
    return dict(zip(("p10", "median", "p90"), np.percentile(a, [10, 50, 90]).round(2).tolist())) if len(a) else None


def summary(episodes: list[dict]) -> dict:
    offsets = np.array([e["offset_at_contact_mm"] for e in episodes if e["offset_at_contact_mm"] is not None])
    after = np.array([e["steps_after_contact"] for e in episodes if e["steps_after_contact"] is not None])
    return {"episodes": len(episodes), "success_rate": float(np.mean([e["success"] for e in episodes])),
            "offset_at_contact_mm": percentiles(offsets), "steps_after_contact": percentiles(after),
            "first_contact_step": percentiles(np.array([e["first_contact_step"] for e in episodes
                                                if e["first_contact_step"] is not None]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="policy run folders (their policy.pt) or policy.pt files")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=2_000_000, help="first held-out seed")
    ap.add_argument("--camera-target-error", type=float, default=None, metavar="M",
                    help="a per-episode camera calibration error, m (the env's randomization.camera_target_error)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    env_over = ({} if args.camera_target_error is None
                else {"randomization": {"camera_target_error": args.camera_target_error}})
    result = {"benchmark": "landing_offsets", "date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
              "episodes": args.episodes, "first_seed": args.seed, "camera_target_error": args.camera_target_error,
              "policies": {}}
    for run in args.runs:
        path = run / "policy.pt" if run.is_dir() else run
        model, venv, _, rms = load_policy(path, env_over)
        try:
            episodes = [landing(model, venv, args.seed + k, rms) for k in range(args.episodes)]
        finally:
            venv.close()
        result["policies"][str(run)] = {**summary(episodes), "per_episode": episodes}
        s = result["policies"][str(run)]
        print(f"{run}: success {s['success_rate']:.2f}, offset at first contact (mm) {s['offset_at_contact_mm']}, "
              f"steps after contact {s['steps_after_contact']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
