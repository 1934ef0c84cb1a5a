"""Scripted-policy success rates per peg shape, and the contact forces they produce.

For every shape: the expert (spiral search on contact) and the push-straight-down baseline (no search,
no force feedback) over N seeded episodes each, with the env's default hole-estimate error (2 mm) and
clearance (2 mm), camera off (the policies act on state). Also the peaks of the control-step-mean |F|
and of the single-substep |F| over the expert's insertions, and the steps each episode took (all of
them, and after the first contact). Writes JSON.

    python benchmarks/expert_success.py --episodes 50 --out outputs/bench/expert_success.json

``--env touch`` takes the env settings of ``configs/env/touch.yaml`` (any file of that folder), and
``--set max_steps=200`` overrides one of them (dotted names for nested ones); the touch ablation of
docs/results/touch_task.md compares ``--policies expert_moment expert expert_blind push_down``.
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
import yaml
from tqdm import tqdm

import sim
from sim.experts import run_episode
from sim.observation import tool_down_quat
from sim.robot import ARM_JOINTS, FT_JOINT
from sim.task import make_expert


def evaluate(shape: str, policy_name: str, episodes: int, seed0: int, env_kwargs: dict,
             estimate_error: float | None = None) -> dict:
    if estimate_error is not None:
        randomization = {**env_kwargs.get("randomization", {}), "hole_estimate_error": estimate_error}
        env_kwargs = {**env_kwargs, "randomization": randomization}
    env = gym.make(f"mmrep/PegInsertion{shape.capitalize()}-v0", use_camera=False, **env_kwargs)
    policy = make_expert(policy_name, env.unwrapped.cfg)
    results = []
    for k in tqdm(range(episodes), desc=f"{policy_name:>9} {shape:<10}", leave=False, disable=None):
        # The steps taken and the step of the first peg-block contact (the sim's flags, for the record).
        steps, touched = [0], []

        def count(step, steps=steps, touched=touched) -> None:
            steps[0] += 1
            if not touched and step.obs["contact"].any():
                touched.append(steps[0])

        r = run_episode(env, policy, seed=seed0 + k, on_step=count)
        r["first_contact_step"] = touched[0] if touched else None
        results.append(r)
    env.close()
    ok = [r for r in results if r["success"]]
    after = [r["steps"] - r["first_contact_step"] for r in ok if r["first_contact_step"] is not None]
    return {
        "success_rate": float(np.mean([r["success"] for r in results])),
        "episodes": episodes,
        "first_seed": seed0,
        "max_steps": env.unwrapped.cfg.max_steps,
        "mean_steps_success": float(np.mean([r["steps"] for r in ok])) if ok else None,
        "median_steps_success": float(np.median([r["steps"] for r in ok])) if ok else None,
        "max_steps_success": int(max(r["steps"] for r in ok)) if ok else None,
        "mean_steps_all": float(np.mean([r["steps"] for r in results])),
        "mean_steps_after_contact_success": float(np.mean(after)) if after else None,
        "median_steps_after_contact_success": float(np.median(after)) if after else None,
        "episode_steps": [int(r["steps"]) for r in results],
        "episode_success": [bool(r["success"]) for r in results],
        "force_step_mean_peak_N": float(max(r["force_step_peak"] for r in results)),
        "force_substep_peak_N": float(max(r["force_substep_peak"] for r in results)),
        "force_step_mean_peak_median_N": float(np.median([r["force_step_peak"] for r in results])),
        "truncations": {k: sum(r["truncation_reason"] == k for r in results)
                        for k in {r["truncation_reason"] for r in results} if k},
    }


def env_settings(name: str | None, overrides: list[str]) -> dict:
    """Env keyword arguments from ``configs/env/<name>.yaml`` (None: the defaults) plus ``key=value``
    overrides (dotted keys for nested sections, values parsed as YAML)."""
    settings: dict = {}
    if name is not None:
        path = Path(__file__).resolve().parents[1] / "configs" / "env" / f"{name}.yaml"
        if not path.exists():
            raise SystemExit(f"--env {name}: {path} does not exist")
        settings = yaml.safe_load(path.read_text()) or {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value")
        *parents, leaf = key.split(".")
        node = settings
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return settings


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
    ap.add_argument("--env", default=None, help="env settings from configs/env/<ENV>.yaml (default: none)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one env setting (dotted for nested: randomization.hole_estimate_error=0.002)")
    ap.add_argument("--no-true-pose-check", dest="true_pose_check", action="store_false",
                    help="skip the push-down run with a perfect hole estimate")
    ap.add_argument("--no-stiff-reference", dest="stiff_reference", action="store_false",
                    help="skip the stiff position-control force reference")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/expert_success.json"))
    args = ap.parse_args()
    settings = env_settings(args.env, args.overrides)
    env_kwargs = {"physics_hz": args.physics_hz, **settings}
    report = {"benchmark": "expert_success", "physics_hz": args.physics_hz, "episodes": args.episodes,
              "first_seed": args.seed, "env": args.env, "env_settings": settings,
              "machine": platform.platform(), "results": {}}
    t0 = time.time()
    for shape in args.shapes:
        report["results"][shape] = {}
        for name in args.policies:
            r = evaluate(shape, name, args.episodes, args.seed, env_kwargs)
            report["results"][shape][name] = r
            print(f"{shape:<10} {name:<13} success {r['success_rate']:.2f}  steps {r['mean_steps_success']}  "
                  f"after contact {r['mean_steps_after_contact_success']}  step-mean |F| peak "
                  f"{r['force_step_mean_peak_N']:.1f} N  substep peak {r['force_substep_peak_N']:.0f} N",
                  flush=True)
        if args.true_pose_check:
            # Control: with the true hole pose, pushing straight down should work: the failures above
            # are the estimate error's doing, which is what the wrist sensor is for.
            r = evaluate(shape, "push_down", args.episodes, args.seed, env_kwargs, estimate_error=0.0)
            report["results"][shape]["push_down_true_pose"] = r
            print(f"{shape:<10} push_down with the true hole pose: success {r['success_rate']:.2f}",
                  flush=True)
    if args.stiff_reference:
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
