"""Scripted-policy success rates per peg shape, and the contact forces they produce.

For every shape: the expert (spiral search on contact) and the push-straight-down baseline (no search,
no force feedback) over N seeded episodes each, with the env's default hole-estimate error (2 mm) and
clearance (2 mm), camera off (the policies act on state). Also the peaks of the control-step-mean |F|
and of the single-substep |F| over the expert's insertions. Writes JSON.

    python benchmarks/expert_success.py --episodes 50 --out outputs/bench/expert_success.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pybullet as p
from tqdm import tqdm

import sim
from sim.observation import tool_down_quat
from sim.policies import make_policy, run_episode
from sim.robot import ARM_JOINTS, FT_JOINT


def evaluate(shape: str, policy_name: str, episodes: int, seed0: int, env_kwargs: dict,
             estimate_error: float | None = None) -> dict:
    if estimate_error is not None:
        env_kwargs = {**env_kwargs, "randomization": {"hole_estimate_error": estimate_error}}
    env = gym.make(f"mmrep/PegInsertion{shape.capitalize()}-v0", use_camera=False, **env_kwargs)
    policy = make_policy(policy_name, env.unwrapped.cfg)
    results = []
    for k in tqdm(range(episodes), desc=f"{policy_name:>9} {shape:<10}", leave=False, disable=None):
        results.append(run_episode(env, policy, seed=seed0 + k))
    env.close()
    ok = [r for r in results if r["success"]]
    return {
        "success_rate": float(np.mean([r["success"] for r in results])),
        "episodes": episodes,
        "mean_steps_success": float(np.mean([r["steps"] for r in ok])) if ok else None,
        "force_step_mean_peak_N": float(max(r["force_step_peak"] for r in results)),
        "force_substep_peak_N": float(max(r["force_substep_peak"] for r in results)),
        "force_step_mean_peak_median_N": float(np.median([r["force_step_peak"] for r in results])),
        "truncations": {k: sum(r["truncation_reason"] == k for r in results)
                        for k in {r["truncation_reason"] for r in results} if k},
    }


def stiff_position_reference(seed: int = 0) -> dict:
    """What the impedance controller is for: press the peg 1 cm into the block top with PyBullet's
    stiff joint position motors (URDF effort limit, 300 N m) and read the wrist F/T joint."""
    env = gym.make("mmrep/PegInsertion-v0", use_camera=False)
    u = env.unwrapped
    _, info = env.reset(seed=seed)
    c, arm = u.client, u.robot.uid
    spot = info["hole_pos"] + np.array([0.035, 0.0, -0.01])  # on the block beside the hole, 1 cm in
    q_goal = u.robot.solve_ik(spot, tool_down_quat(0.0))
    env.reset(seed=seed)
    p.setJointMotorControlArray(arm, list(ARM_JOINTS), p.POSITION_CONTROL, targetPositions=q_goal.tolist(),
                                forces=[300.0] * 7, physicsClientId=c)
    n = u.cfg.n_substeps
    forces = []
    for _ in range(40 * n):  # 2 s
        p.stepSimulation(physicsClientId=c)
        forces.append(np.linalg.norm(p.getJointState(arm, FT_JOINT, physicsClientId=c)[2][:3]))
    env.close()
    f = np.asarray(forces)
    return {"substep_peak_N": float(f.max()),
            "step_mean_peak_N": float(f[: len(f) // n * n].reshape(-1, n).mean(axis=1).max()),
            "steady_N": float(f[-n:].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=20_000, help="first episode seed")
    ap.add_argument("--shapes", nargs="+", default=list(sim.PEG_SHAPES))
    ap.add_argument("--policies", nargs="+", default=["expert", "push_down"])
    ap.add_argument("--physics-hz", type=float, default=1000.0)
    ap.add_argument("--no-true-pose-check", dest="true_pose_check", action="store_false",
                    help="skip the push-down run with a perfect hole estimate")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/expert_success.json"))
    args = ap.parse_args()
    env_kwargs = {"physics_hz": args.physics_hz}
    report = {"benchmark": "expert_success", "physics_hz": args.physics_hz, "episodes": args.episodes,
              "first_seed": args.seed, "machine": platform.platform(), "results": {}}
    t0 = time.time()
    for shape in args.shapes:
        report["results"][shape] = {}
        for name in args.policies:
            r = evaluate(shape, name, args.episodes, args.seed, env_kwargs)
            report["results"][shape][name] = r
            print(f"{shape:<10} {name:<10} success {r['success_rate']:.2f}  step-mean |F| peak "
                  f"{r['force_step_mean_peak_N']:.1f} N  substep peak {r['force_substep_peak_N']:.0f} N",
                  flush=True)
        if args.true_pose_check:
            # Control: with the true hole pose, pushing straight down should work: the failures above
            # are the estimate error's doing, which is what the wrist sensor is for.
            r = evaluate(shape, "push_down", args.episodes, args.seed, env_kwargs, estimate_error=0.0)
            report["results"][shape]["push_down_true_pose"] = r
            print(f"{shape:<10} push_down with the true hole pose: success {r['success_rate']:.2f}",
                  flush=True)
    report["stiff_position_control_reference"] = ref = stiff_position_reference()
    print(f"stiff position control pressing 1 cm into the block: step-mean |F| peak "
          f"{ref['step_mean_peak_N']:.0f} N, substep peak {ref['substep_peak_N']:.0f} N, steady "
          f"{ref['steady_N']:.0f} N")
    report["seconds"] = time.time() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
