"""Policy-training throughput and where its time goes: env steps/s of PPO on the frozen encoder's latent
(camera on), for any encoder, worker count and place of encoding, with the CPU time shares of render,
encoder, physics + control and learner, and the ceiling they imply.

    python benchmarks/policy_throughput.py --encoder benchmarks/results/insertion/encoders/insertion.pt \
        --workers 1 2 --encode-in main workers --out benchmarks/results/speed/policy_throughput.json

Two kinds of figure:

* shares, from CPU time (``time.process_time``) of one process doing each part alone, so they hold on a
  busy machine: physics + control (env steps with the camera off), render and observation packing
  (camera on, minus camera off), the encoder (one observation, or a batch of ``workers`` in the main
  process), the learner (PPO's policy forward per step plus its update, per env step);
* wall-clock steps/s of random stepping (envs alone) and of PPO learning (``mmrep.policy.build_venv``,
  the fused row's PPO settings: batch 64, 10 epochs, one rollout of ``--steps``).

The ceiling: with every part perfectly overlapped on the machine's cores, steps/s cannot exceed
``cores / (CPU seconds of all parts per step)``. The schedule estimate follows the loop's order: with
encoding in the main process the encoder and the learner run while the workers wait,
``1 / (env / lanes + encoder + learner)``; with encoding in the workers ``1 / ((env + encoder) / lanes +
learner)``, lanes = min(workers, cores), every term CPU seconds per env step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from functools import partial

import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from mmrep.config import AlgoConfig, ObsConfig, PolicyConfig
from mmrep.encoder import load_encoder
from mmrep.policy import CLIP_OBS, build_model, build_venv
from mmrep.rl.latent import FrozenEncoder
from sim.rl_env import make_rl_env

PPO = {"batch_size": 64, "n_epochs": 10, "gamma": 0.99, "gae_lambda": 0.95, "learning_rate": 3.0e-4}


def cpu_ms(fn, n: int, warmup: int = 3) -> float:
    """CPU milliseconds of this process per call of ``fn`` (median of 3 blocks of ``n`` calls)."""
    for _ in range(warmup):
        fn()
    blocks = []
    for _ in range(3):
        t = time.process_time()
        for _ in range(n):
            fn()
        blocks.append((time.process_time() - t) / n * 1000)
    return float(np.median(blocks))


def env_cpu_ms(env_kwargs: dict, steps: int) -> float:
    """CPU ms per env step (random actions, resets included), in this process."""
    e = make_rl_env(env_kwargs)
    e.reset(seed=0)
    rng = np.random.default_rng(0)

    def step():
        _, _, term, trunc, _ = e.step(rng.uniform(-1, 1, e.action_space.shape).astype(np.float32))
        if term or trunc:
            e.reset()

    try:
        return cpu_ms(step, steps)
    finally:
        e.close()


def encoder_cpu_ms(encoder: str, env_kwargs: dict, batch: int, jit: bool = False, onnx: bool = False) -> float:
    """CPU ms per observation of the frozen encoder at batch size ``batch`` (1 thread); ``jit``: as a
    frozen TorchScript trace (``mmrep.rl.latent.FrozenEncoder``); ``onnx``: under ONNX Runtime
    (``mmrep.formats.encoder_export.OnnxRuntimeEncoder``, one intra-op thread)."""
    e = make_rl_env(env_kwargs)
    obs, _ = e.reset(seed=0)
    e.close()
    enc = load_encoder(encoder)
    if onnx:
        from mmrep.formats.encoder_export import OnnxRuntimeEncoder

        run = OnnxRuntimeEncoder(enc, int(obs["force"].shape[0]) if "force" in obs else 50)
    else:
        run = FrozenEncoder(enc) if jit else enc.encode
    b = {k: np.stack([v] * batch) for k, v in obs.items()}
    return cpu_ms(lambda: run(b), 20) / batch


def learner_cpu_ms(dim: int, n: int, rollout: int) -> float:
    """CPU ms per env step of PPO on a (dim,) observation: the policy's forward per vector step and the
    update after each rollout, with random observations (the envs cost nothing here)."""
    from gymnasium import Env, spaces
    from stable_baselines3 import PPO as PPOAlgo

    rng = np.random.default_rng(0)

    class Zeros(Env):
        observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        action_space = spaces.Box(-1.0, 1.0, (3,), np.float32)

        def reset(self, *, seed=None, options=None):
            return np.zeros(dim, np.float32), {}

        def step(self, action):
            return rng.standard_normal(dim).astype(np.float32), 0.0, False, False, {}

    v = VecNormalize(DummyVecEnv([Zeros] * n), norm_reward=False, clip_obs=CLIP_OBS)
    model = PPOAlgo("MlpPolicy", v, n_steps=rollout // n, seed=0, device="cpu", **PPO)
    t = time.process_time()
    model.learn(rollout)
    return (time.process_time() - t) / rollout * 1000


def random_steps_per_s(venv, steps: int) -> float:
    venv.reset()
    n = venv.num_envs
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps // n):
        venv.step(rng.uniform(-1, 1, (n,) + venv.action_space.shape).astype(np.float32))
    return (steps // n) * n / (time.perf_counter() - t0)


def training_steps_per_s(encoder: str, n: int, encode_in: str, steps: int, device: str = "cpu",
                         jit: bool = False, onnx: bool = False) -> float:
    """Wall-clock env steps/s of ``mmrep.policy``'s PPO loop on latent_proprio (one rollout of ``steps``);
    ``device`` holds the learner and, encoding in the main process, the encoder."""
    cfg = PolicyConfig(obs=ObsConfig(kind="latent_proprio", encoder=encoder, encode_in=encode_in, jit=jit,
                                       onnx=onnx),
                       algo=AlgoConfig("ppo", {**PPO, "n_steps": steps // n}), n_envs=n, threads=1,
                       device=device, eval_episodes=0, progress=False)
    cfg.validate()
    venv = VecNormalize(build_venv(cfg, n, 0), norm_obs=True, norm_reward=False, clip_obs=CLIP_OBS)
    model = build_model(cfg, venv)
    try:
        t0 = time.perf_counter()
        model.learn(steps)
        return steps / (time.perf_counter() - t0)
    finally:
        venv.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="benchmarks/results/insertion/encoders/insertion.pt")
    ap.add_argument("--steps", type=int, default=1024, help="env steps per wall-clock measurement (all workers)")
    ap.add_argument("--cpu-steps", type=int, default=40, help="env steps per CPU-time block (3 blocks)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--encode-in", nargs="+", default=["main", "workers"], choices=["main", "workers"])
    ap.add_argument("--physics-hz", type=float, default=1000.0)
    ap.add_argument("--no-wall", action="store_true", help="CPU shares only (no wall-clock runs)")
    ap.add_argument("--device", default="cpu", help="learner (and main-process encoder) device of the PPO runs")
    ap.add_argument("--jit", action="store_true", help="the encoder as a frozen TorchScript trace (obs.jit=true)")
    ap.add_argument("--onnx", action="store_true", help="the encoder under ONNX Runtime (obs.onnx=true)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = {"physics_hz": args.physics_hz}
    cores = os.cpu_count() or 1
    cpu = {"physics_and_control": env_cpu_ms({**env, "use_camera": False}, args.cpu_steps)}
    cpu["render"] = max(env_cpu_ms(env, args.cpu_steps) - cpu["physics_and_control"], 0.0)
    enc_dim = load_encoder(args.encoder).z_dim + 13
    result: dict = {"benchmark": "policy_throughput", "date": time.strftime("%Y-%m-%d"),
                    "machine": platform.platform(), "cores": cores, "torch_threads": 1, "encoder": args.encoder,
                    "env": env, "steps": args.steps, "ppo": PPO, "device": args.device, "jit": args.jit,
                    "onnx": args.onnx,
                    "cpu_ms_per_step": cpu, "rows": {}}
    print(f"CPU ms per env step: physics+control {cpu['physics_and_control']:.2f}, render {cpu['render']:.2f}")
    for n in args.workers:
        enc_one = encoder_cpu_ms(args.encoder, env, 1, args.jit, args.onnx)
        enc_batch = encoder_cpu_ms(args.encoder, env, n, args.jit, args.onnx) if n > 1 else enc_one
        learner = learner_cpu_ms(enc_dim, n, max(args.steps, 64 * n))
        wall: dict = {}
        if not args.no_wall:
            fns = [partial(make_rl_env, env) for _ in range(n)]
            v = SubprocVecEnv(fns) if n > 1 else DummyVecEnv(fns)
            wall["random_steps_per_s"] = random_steps_per_s(v, args.steps)
            v.close()
        for where in args.encode_in:
            if where == "workers" and n == 1:
                continue  # one env: no worker to encode in
            enc = enc_one if where == "workers" else enc_batch
            parts = {**cpu, "encoder": enc, "learner": learner}
            total = sum(parts.values())
            env_ms = cpu["physics_and_control"] + cpu["render"]
            lanes = min(n, cores)
            # per env step, wall ms of the schedule: the workers in parallel (lanes at a time), then
            # what the main process does while they wait
            if where == "workers":
                schedule = (env_ms + enc) / lanes + learner
            else:
                schedule = env_ms / lanes + enc + learner
            row = {"cpu_ms_per_step": parts, "time_share": {k: v / total for k, v in parts.items()},
                   "ceiling_steps_per_s_all_cores": 1000 * cores / total,
                   "schedule_estimate_steps_per_s": 1000 / schedule, **wall}
            if not args.no_wall:
                row["training_steps_per_s"] = training_steps_per_s(args.encoder, n, where, args.steps, args.device,
                                                                   args.jit, args.onnx)
                row["ratio_training_vs_random"] = row["training_steps_per_s"] / wall["random_steps_per_s"]
            key = f"{n}_workers_encode_in_{where}"
            result["rows"][key] = row
            shares = " ".join(f"{k} {v:.0%}" for k, v in row["time_share"].items())
            line = (f"{n} worker(s), encode in {where}: shares {shares}; ceiling "
                    f"{row['ceiling_steps_per_s_all_cores']:.0f} steps/s on {cores} cores, "
                    f"schedule estimate {row['schedule_estimate_steps_per_s']:.0f}")
            if "training_steps_per_s" in row:
                line += (f"; measured PPO {row['training_steps_per_s']:.1f} steps/s (random stepping "
                         f"{wall['random_steps_per_s']:.1f})")
            print(line, flush=True)
    result["load_avg_at_end"] = os.getloadavg()
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
