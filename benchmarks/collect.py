"""Collection throughput: recording + HDF5 writing vs the env alone, and 2 workers vs 1.

In one run, on the same episodes (same seeds, policies, shapes; camera and exact flow on, as
collection uses them):
  * env_only: the episodes stepped in this process with nothing recorded;
  * collect_1: ``sim.collect.collect`` with 1 worker (recording, checksums, lzf HDF5 writes);
  * collect_2: the same with 2 worker processes (spawn start-up included).
Targets: collect_1 / env_only >= 0.85; collect_2 / collect_1 >= 1.7. Also the bytes per step on
disk and the time a paper-sized dataset (100k samples) would take at the 2-worker rate. Writes JSON.

    python benchmarks/collect.py --episodes 40 --out outputs/bench/collect.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import gymnasium as gym

import sim  # noqa: F401
from sim.collect import CollectConfig, collect, plan_episode
from sim.experts import run_episode
from sim.registration import env_id
from sim.task import make_expert


def env_only(cfg: CollectConfig) -> tuple[float, int]:
    cfg.validate()  # as collect() does: the env section given as a dict becomes an EnvConfig
    envs, steps = {}, 0
    t0 = time.perf_counter()
    for index in range(cfg.episodes):
        seed, shape, policy_name = plan_episode(cfg, index)
        if shape not in envs:
            envs[shape] = gym.make(env_id(shape), config=cfg.env_config(shape))  # as sim.collection builds it
        env = envs[shape]
        policy = make_expert(policy_name, env.unwrapped.cfg, **cfg.policy_kwargs.get(policy_name, {}))
        steps += run_episode(env, policy, seed=seed)["steps"]
    elapsed = time.perf_counter() - t0
    for env in envs.values():
        env.close()
    return steps / elapsed, steps


def timed_collect(cfg: CollectConfig) -> tuple[float, dict]:
    t0 = time.perf_counter()
    manifest = collect(cfg, progress=False)
    elapsed = time.perf_counter() - t0
    return manifest["totals"]["steps"] / elapsed, manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/collect.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmrep_bench_collect_"))
    base = dict(episodes=args.episodes, env={"max_steps": args.max_steps}, seed=123)
    try:
        rate_env, steps_env = env_only(CollectConfig(**base, out=str(tmp / "unused")))
        rate_1, m1 = timed_collect(CollectConfig(**base, out=str(tmp / "w1"), workers=1))
        rate_2, m2 = timed_collect(CollectConfig(**base, out=str(tmp / "w2"), workers=2))
        size = sum(p.stat().st_size for p in (tmp / "w2").glob("shard_*.h5"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    steps = m2["totals"]["steps"]
    assert steps == m1["totals"]["steps"] == steps_env
    bytes_per_step = size / steps
    report = {
        "benchmark": "collect", "machine": platform.platform(), "episodes": args.episodes,
        "steps": steps, "env_only_steps_per_s": rate_env, "collect_1_worker_steps_per_s": rate_1,
        "collect_2_workers_steps_per_s": rate_2, "recording_ratio": rate_1 / rate_env,
        "two_worker_speedup": rate_2 / rate_1, "bytes_per_step": bytes_per_step,
        "paper_sized_100k_samples": {"minutes_at_2_workers": 100_000 / rate_2 / 60,
                                     "gib_on_disk": 100_000 * bytes_per_step / 2**30,
                                     "note": "extrapolated from this run's rates and sizes"},
        "targets": {"recording_ratio": 0.85, "two_worker_speedup": 1.7},
    }
    report["meets_targets"] = report["recording_ratio"] >= 0.85 and report["two_worker_speedup"] >= 1.7
    print(f"env only {rate_env:.0f} steps/s | collect 1 worker {rate_1:.0f} steps/s "
          f"(ratio {rate_1 / rate_env:.2f}) | 2 workers {rate_2:.0f} steps/s (x{rate_2 / rate_1:.2f}) | "
          f"{bytes_per_step / 1024:.1f} KiB/step | 100k samples: "
          f"{report['paper_sized_100k_samples']['minutes_at_2_workers']:.0f} min, "
          f"{report['paper_sized_100k_samples']['gib_on_disk']:.2f} GiB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
