"""Do policies fail at finishing because the peg wedges? Saved policies rolled out on held-out seeds
with the controller as trained and with the lateral lead bounded once the tip is in the hole
(``controller.max_lateral_lead_in_hole``); per episode: success, where it ended (depth below the
block's top and offset from the hole's axis, mm), the last step's lateral and vertical lead of the
controller's target over the tip (mm: kp_pos x lead is the push, 2 N/mm), and the last action.

    python benchmarks/wedge_check.py runs/paper/fused_touch_s0 runs/paper/no_haptics_touch_s0 \
        --bounds none 0.0005 --episodes 20 --out benchmarks/results/touch_task/wedge_check.json

A wedged policy ends deep in the hole, short of the insertion depth, with its target held far to the
side (pushing the tilted peg against the wall); with the bound the same commands push with about 1 N.

``--push-below MM`` adds, for each bound, the same rollouts with the policy's vertical action replaced
by ``PUSH_ACTION`` (down, half the action range) once the tip is more than MM below the block's top:
a policy that found the hole but does not push on then finishes; a jammed peg does not.

``--trace`` keeps each step's depth and vertical action and summarises the steps taken in the hole:
the mean vertical action, and how often a push down (action <= -0.5) is followed by a pull up
(>= 0.5), which cancels it when actions accumulate into the controller's target.

    python benchmarks/wedge_check.py benchmarks/results/paper_touch/runs/fused_touch_s0 --bounds none \
        --trace --episodes 20 --out benchmarks/results/touch_task/in_hole_actions.json

    python benchmarks/wedge_check.py runs/paper/fused_touch_s0 --bounds 0.0005 --push-below 5 \
        --episodes 100 --out benchmarks/results/touch_task/push_on_check.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mmrep.policy import load_policy, normalize_obs
from mmrep.policy_eval import policy_file

PUSH_ACTION = -0.5  # the vertical action of --push-below: 5 mm a step down at the default action scale


def rollout(model, venv, rms, seed: int, push_below_mm: float | None = None, trace: bool = False) -> dict:
    """One mean-action episode on ``seed``; the last step's state before the episode ended. With
    ``push_below_mm``, the vertical action is ``PUSH_ACTION`` once the tip is deeper than that; with
    ``trace``, ``"trace"`` holds every step's [depth (mm, after the step), vertical action]."""
    venv.seed(seed)
    obs = venv.reset()
    steps, last, action, steps_trace = 0, None, None, []
    while True:
        action, _ = model.predict(normalize_obs(obs, rms), deterministic=True)
        if push_below_mm is not None and last is not None and 1000 * last["insertion_depth"] > push_below_mm:
            action = action.copy()
            action[:, 2] = PUSH_ACTION
        obs, _, done, infos = venv.step(action)
        steps += 1
        if trace and "insertion_depth" in infos[0]:
            steps_trace.append([round(1000 * float(infos[0]["insertion_depth"]), 2), round(float(action[0, 2]), 3)])
        if done[0]:
            info = infos[0]
            break
        last = infos[0]
    lead = (last["target_pos"] - last["tip_pos"]) if last is not None else np.zeros(3)
    extra = {"trace": steps_trace} if trace else {}
    return {**extra, "seed": seed, "success": bool(info.get("is_success", False)), "steps": steps,
            "depth_mm": 1000 * float(last["insertion_depth"]) if last else None,
            "offset_mm": 1000 * float(last["hole_distance"]) if last else None,
            "lateral_lead_mm": 1000 * float(np.hypot(lead[0], lead[1])), "vertical_lead_mm": 1000 * float(lead[2]),
            "last_action": [round(float(a), 3) for a in action[0]]}


def in_hole_actions(episodes: list[dict], push: float = -0.5, pull: float = 0.5) -> dict | None:
    """Over traced episodes' steps taken with the tip in the hole (deeper than 1 mm before the step):
    the mean vertical action, and of the steps that pushed down (action <= ``push``), the share
    whose next step pulled up (>= ``pull``): a policy that cancels its own pushes there."""
    vertical, pushes, pulled = [], 0, 0
    for e in episodes:
        t = e.get("trace") or []
        for k in range(1, len(t)):
            if t[k - 1][0] > 1.0:
                vertical.append(t[k][1])
                if k + 1 < len(t) and t[k][1] <= push:
                    pushes += 1
                    pulled += t[k + 1][1] >= pull
    if not vertical:
        return None
    return {"steps": len(vertical), "mean_vertical_action": float(np.mean(vertical)),
            "pushes": pushes, "pulled_next": pulled, "pulled_next_share": pulled / pushes if pushes else None}


def _median(episodes: list[dict], key: str) -> float | None:
    return float(np.median([e[key] for e in episodes])) if episodes else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("policies", nargs="+", help="policy run folders or policy.pt files")
    ap.add_argument("--bounds", nargs="+", default=["none", "0.0005"],
                    help="controller.max_lateral_lead_in_hole values (m); 'none': as the policy was trained")
    ap.add_argument("--push-below", type=float, metavar="MM",
                    help="also roll out with the vertical action pushing down once the tip is this deep (mm)")
    ap.add_argument("--trace", action="store_true",
                    help="keep every step's depth and vertical action, and summarise the in-hole actions")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=2_000_000, help="first held-out seed")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [args.seed + k for k in range(args.episodes)]
    results, t0 = [], time.time()
    pushes = [None] + ([args.push_below] if args.push_below is not None else [])
    with tqdm(total=len(args.policies) * len(args.bounds) * len(pushes) * len(seeds), desc="wedge check",
              unit="episode") as bar:
        for pol, bound, push in ((p, b, q) for p in args.policies for b in args.bounds for q in pushes):
            over = {} if bound == "none" else {"controller": {"max_lateral_lead_in_hole": float(bound)}}
            model, venv, cfg, rms = load_policy(policy_file(pol), over)
            try:
                episodes = []
                for s in seeds:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(s)
                        episodes.append(rollout(model, venv, rms, s, push, args.trace))
                    bar.update()
            finally:
                venv.close()
            fails = [e for e in episodes if not e["success"]]
            row = {"policy": str(pol), "trained_bound": cfg.env.controller.max_lateral_lead_in_hole,
                   "bound": None if bound == "none" else float(bound), "push_below_mm": push,
                   "episodes": len(episodes),
                   "success_rate": float(np.mean([e["success"] for e in episodes])),
                   "failures_median_depth_mm": _median(fails, "depth_mm"),
                   "failures_median_offset_mm": _median(fails, "offset_mm"),
                   "failures_median_lateral_lead_mm": _median(fails, "lateral_lead_mm"),
                   **({"in_hole_actions": in_hole_actions(episodes)} if args.trace else {}),
                   "episode_results": episodes}
            results.append(row)
            print(f"{pol}  bound {bound:>7}  push below {push} mm  success {row['success_rate']:.2f}  failures: depth "
                  f"{row['failures_median_depth_mm']} mm, lateral lead {row['failures_median_lateral_lead_mm']} mm")
            if args.trace:
                print(f"  in the hole: {row['in_hole_actions']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "wedge_check", "first_seed": args.seed, "mode": "deterministic",
                                    "seconds": time.time() - t0, "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
