"""Env steps/s against a bare PyBullet loop doing the same physics and one render per step.

Both run in the same process and the same scene (the env's own client): the baseline holds the arm
with PyBullet's built-in position motors (no Python per substep) and calls stepSimulation
``n_substeps`` times plus one 128x128 RGB-D render per step. The env runs its impedance controller in
Python at every substep, reads the F/T joint and contact flags, and renders once. Rounds alternate
between the two and the medians are compared (this machine is noisy: +-20%). Writes JSON.

    python benchmarks/env_step.py --out outputs/bench/env_step.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import gymnasium as gym
import pybullet as p

import sim  # noqa: F401
from sim.camera import Camera
from sim.peg_hole_experts import RandomExplorer
from sim.robot import ARM_JOINTS


def env_rate(env, policy, steps: int, seed: int) -> float:
    obs, info = env.reset(seed=seed)
    policy.reset(info, seed=seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, _, terminated, truncated, info = env.step(policy.act(obs, info))
        if terminated or truncated:
            obs, info = env.reset(seed=seed)
            policy.reset(info, seed=seed)
    return steps / (time.perf_counter() - t0)


def bare_rate(env, steps: int, seed: int, render: bool) -> float:
    u = env.unwrapped
    env.reset(seed=seed)
    c = u.client
    q = [p.getJointState(u.robot.uid, j, physicsClientId=c)[0] for j in ARM_JOINTS]
    p.setJointMotorControlArray(u.robot.uid, list(ARM_JOINTS), p.POSITION_CONTROL, targetPositions=q,
                                forces=[300.0] * 7, physicsClientId=c)
    n = u.cfg.n_substeps
    cfg = u.cfg
    naive = Camera(c, cfg.image_size, cfg.camera_target, cfg.camera_distance, cfg.camera_yaw,
                   cfg.camera_pitch, cfg.camera_fov)  # no culling: every link drawn every frame
    if u.camera is not None:
        u.camera.show_all()
    t0 = time.perf_counter()
    for _ in range(steps):
        for _ in range(n):
            p.stepSimulation(physicsClientId=c)
        if render:
            naive.render()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150, help="control steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--physics-hz", type=float, default=1000.0)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/env_step.json"))
    args = ap.parse_args()
    report: dict = {"benchmark": "env_step", "machine": platform.platform(), "physics_hz": args.physics_hz,
                    "steps_per_round": args.steps, "rounds": args.rounds, "cases": {}}
    for camera in (True, False):
        env = gym.make("mmrep/PegInsertion-v0", use_camera=camera, physics_hz=args.physics_hz)
        policy = RandomExplorer(env.unwrapped.cfg)
        env_rate(env, policy, 10, 0)  # warm-up: asset loading, first render
        envs, bares = [], []
        for r in range(args.rounds):
            envs.append(env_rate(env, policy, args.steps, seed=r))
            bares.append(bare_rate(env, args.steps, seed=r, render=camera))
        env.close()
        e, b = statistics.median(envs), statistics.median(bares)
        name = "rgbd_128" if camera else "state_only"
        report["cases"][name] = {"env_steps_per_s": e, "bare_loop_steps_per_s": b, "ratio": e / b,
                                 "env_rounds": envs, "bare_rounds": bares,
                                 "substeps_per_step": env.unwrapped.cfg.n_substeps}
        print(f"{name:<10} env {e:7.1f} steps/s   bare loop {b:7.1f} steps/s   ratio {e / b:.2f}",
              flush=True)
    report["target"] = "rgbd_128 ratio >= 0.85"
    report["meets_target"] = report["cases"]["rgbd_128"]["ratio"] >= 0.85
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
