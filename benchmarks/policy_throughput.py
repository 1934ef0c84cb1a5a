"""Policy-training throughput: env steps/s of PPO on the frozen encoder's latent (camera on), against
stepping the same envs alone with random actions on the same cores, in one run; 1 and 2 workers;
and where the time goes (physics, rendering, encoder, learner).

    python benchmarks/policy_throughput.py --encoder runs/quality_poe/encoder.pt \
        --out benchmarks/results/policy_throughput.json

Prints a table and writes JSON. Target: training / random stepping >= 0.8. With as many workers as
cores, ``ratio_ceiling_if_overlapped`` is the best ratio any scheduling could reach on these cores:
the envs' CPU time over the envs', the encoder's and the learner's together.
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
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from mmrep.rl.sb3 import VecLatentObservation
from sim.policy_env import make_policy_env


def vec(n: int, env: dict) -> SubprocVecEnv | DummyVecEnv:
    fns = [partial(make_policy_env, env) for _ in range(n)]
    v = SubprocVecEnv(fns) if n > 1 else DummyVecEnv(fns)
    v.seed(0)
    return v


def random_steps_per_s(venv, steps: int) -> float:
    venv.reset()
    n = venv.num_envs
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps // n):
        venv.step(rng.uniform(-1, 1, (n,) + venv.action_space.shape).astype(np.float32))
    return (steps // n) * n / (time.perf_counter() - t0)


def measure_training(n: int, threads: int, env: dict, args, row: dict) -> dict:
    """With ``threads`` torch threads in the main process: random stepping with the encoder in the
    loop, the encoder alone, and PPO on z; where the time goes."""
    torch.set_num_threads(threads)
    out: dict = {}
    v = VecLatentObservation(vec(n, env), args.encoder)
    out["random_steps_per_s_with_encoder"] = random_steps_per_s(v, args.steps)
    obs = v.venv.reset()
    t0 = time.perf_counter()
    for _ in range(20):
        v.codec.encode(obs)
    out["encoder_ms_per_batch"] = (time.perf_counter() - t0) / 20 * 1000
    v.close()
    v = VecNormalize(VecLatentObservation(vec(n, env), args.encoder), norm_reward=False, clip_obs=5.0)
    model = PPO("MlpPolicy", v, n_steps=args.steps // n, batch_size=64, n_epochs=10, seed=0, device="cpu")
    t0 = time.perf_counter()
    model.learn(args.steps)
    out["training_steps_per_s"] = args.steps / (time.perf_counter() - t0)
    v.close()
    out["ratio_training_vs_random"] = out["training_steps_per_s"] / row["random_steps_per_s"]
    per_step = {  # seconds per env step, all workers together
        "physics_and_control": 1 / row["random_steps_per_s_camera_off"],
        "render": 1 / row["random_steps_per_s"] - 1 / row["random_steps_per_s_camera_off"],
        "encoder": 1 / out["random_steps_per_s_with_encoder"] - 1 / row["random_steps_per_s"],
        "learner": 1 / out["training_steps_per_s"] - 1 / out["random_steps_per_s_with_encoder"],
    }
    total = sum(max(v_, 0.0) for v_ in per_step.values())
    out["time_share"] = {k: max(v_, 0.0) / total for k, v_ in per_step.items()}
    # With every core stepping envs (workers >= cores), the encoder's and learner's CPU time can only
    # come out of the envs' even if perfectly overlapped: the best ratio any scheduling could reach.
    cores = os.cpu_count() or 1
    if n >= cores:
        env_cpu = cores / row["random_steps_per_s"]  # CPU seconds a step, all cores busy
        enc_cpu = out["encoder_ms_per_batch"] / 1000 / n * threads
        learn_cpu = max(per_step["learner"], 0.0) * threads
        out["ratio_ceiling_if_overlapped"] = env_cpu / (env_cpu + enc_cpu + learn_cpu)
    print(f"{n} worker(s), {threads} thread(s): random {row['random_steps_per_s']:.1f} steps/s (camera off "
          f"{row['random_steps_per_s_camera_off']:.1f}, with encoder {out['random_steps_per_s_with_encoder']:.1f}; "
          f"encoder {out['encoder_ms_per_batch']:.2f} ms a batch), PPO on z {out['training_steps_per_s']:.1f} "
          f"steps/s, ratio {out['ratio_training_vs_random']:.2f}; "
          f"shares {json.dumps({k: round(v_, 2) for k, v_ in out['time_share'].items()})}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", required=True)
    ap.add_argument("--steps", type=int, default=1024, help="env steps per measurement (all workers)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="torch threads of the main process (encoder and learner); each is measured")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    env = {"physics_hz": 1000.0}
    result: dict = {"benchmark": "policy_throughput", "machine": platform.platform(), "torch_threads": args.threads,
                    "steps": args.steps, "encoder": args.encoder, "env": env, "workers": {}}
    for n in args.workers:
        row: dict = {}
        v = vec(n, env)
        row["random_steps_per_s"] = random_steps_per_s(v, args.steps)
        v.close()
        v = vec(n, {**env, "use_camera": False})
        row["random_steps_per_s_camera_off"] = random_steps_per_s(v, args.steps)
        v.close()
        row["threads"] = {str(t): measure_training(n, t, env, args, row) for t in args.threads}
        best = max(row["threads"], key=lambda t: row["threads"][t]["training_steps_per_s"])
        row["best_threads"] = int(best)
        row["ratio_training_vs_random"] = row["threads"][best]["ratio_training_vs_random"]
        row["training_steps_per_s"] = row["threads"][best]["training_steps_per_s"]
        result["workers"][str(n)] = row
    if len(args.workers) > 1:
        a, b = (result["workers"][str(n)] for n in args.workers[:2])
        result["scaling_training"] = b["training_steps_per_s"] / a["training_steps_per_s"]
        result["scaling_random"] = b["random_steps_per_s"] / a["random_steps_per_s"]
    result["meets_target"] = all(r["ratio_training_vs_random"] >= 0.8 for r in result["workers"].values())
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
