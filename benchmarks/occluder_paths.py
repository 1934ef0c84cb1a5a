"""What a trained policy does once the occluder appears at first contact: per held-out episode, the
tip's distance from the hole's axis when the occluder appears and at the end, the closest it came
after, and the sideways path it travelled after (mm).

    python benchmarks/occluder_paths.py RUN [--camera-memory] [--episodes 20] --out FILE.json

RUN: a ``mmrep policy train`` run folder (its ``policy.pt``). The episodes are the evaluation's
held-out seeds (2,000,000 + k), mean action, in the ``occluder_after_contact`` setting of
``mmrep policy eval`` (``--setting occluder``: the static occluder, there from the reset);
``--camera-memory`` evaluates with the camera memory (as ``mmrep policy eval camera_memory=true``).
Writes the episodes and their medians, split by success.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from mmrep.policy import load_policy, run_episodes
from sim.rl_env import CLOSED_LOOP

EVAL_SEED = 2_000_000  # mmrep policy eval's first held-out seed


def episode_path(model, venv, rms, seed: int) -> dict[str, Any]:
    """One episode on ``seed``: success and the tip's path from the step the occluder became visible."""
    steps: list[tuple[bool, float, np.ndarray]] = []
    ep = run_episodes(model, venv, [seed], True, rms, on_step=lambda i: steps.append(
        (bool(i["occluder_visible"]), 1000 * float(i["hole_distance"]), np.asarray(i["tip_pos"], np.float64))))[0]
    shown = [k for k, s in enumerate(steps) if s[0]]
    row: dict[str, Any] = {"seed": seed, "success": ep["success"], "steps": len(steps)}
    if not shown:  # the episode ended before any contact: the occluder never appeared
        return {**row, "occluded": False}
    k0 = shown[0]
    path = sum(float(np.linalg.norm(steps[k][2][:2] - steps[k - 1][2][:2])) for k in range(k0 + 1, len(steps)))
    return {**row, "occluded": True, "step_occluded": k0, "offset_at_occlusion_mm": steps[k0][1],
            "offset_end_mm": steps[-1][1], "min_offset_after_mm": min(s[1] for s in steps[k0:]),
            "lateral_path_after_mm": 1000 * path}


def medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("offset_at_occlusion_mm", "offset_end_mm", "min_offset_after_mm", "lateral_path_after_mm")
    return {"episodes": len(rows), **{k: float(np.median([r[k] for r in rows])) if rows else None for k in keys}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a policy run folder (its policy.pt)")
    ap.add_argument("--camera-memory", action="store_true", help="evaluate with the camera memory")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--setting", choices=("occluder_after_contact", "occluder"), default="occluder_after_contact")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    env_over, perturbations = CLOSED_LOOP[args.setting]
    model, venv, _, rms = load_policy(args.run / "policy.pt", env_over, list(perturbations),
                                      camera_memory=True if args.camera_memory else None)
    try:
        rows = [episode_path(model, venv, rms, EVAL_SEED + k) for k in range(args.episodes)]
    finally:
        venv.close()
    shown = [r for r in rows if r["occluded"]]
    result = {"run": str(args.run), "setting": args.setting, "camera_memory": args.camera_memory, "episodes": rows,
              "success_rate": sum(r["success"] for r in rows) / len(rows),
              "successes": medians([r for r in shown if r["success"]]),
              "failures": medians([r for r in shown if not r["success"]])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    f = result["failures"]
    print(f"{args.run}: {result['success_rate']:.2f} success; failures (median of {f['episodes']}): "
          f"{f['offset_at_occlusion_mm']} mm off when occluded, {f['lateral_path_after_mm']} mm travelled after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
