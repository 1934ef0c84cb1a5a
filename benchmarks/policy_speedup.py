"""The latent PPO loop of the fused row against an older tree of mmrep, side by side in one run.

Env steps/s of ``mmrep.policy``'s training loop (``build_venv`` + ``VecNormalize`` + ``build_model`` +
``learn``) with the fused row's settings (``configs/paper/fused_insertion.yaml``: latent_proprio on
``benchmarks/results/insertion/encoders/insertion.pt``, PPO n_steps 1024 x 2 sub-envs, batch 64,
10 epochs, 1 torch thread in the main process, CPU), measured for the base tree (a ``git archive`` of
``--base``, imported through PYTHONPATH) and this tree, alternating (base, new, new, base, ...) so that
the machine's drift hits both alike. Each measurement is a fresh process that times ``learn`` over
``--steps`` env steps (at least one rollout and one PPO update), not the start-up.

    python benchmarks/policy_speedup.py --base a0db715 --rounds 4 \
        --new obs.encode_in=workers --out benchmarks/results/policy_speedup.json

``--new`` (and ``--base-options``) take ``section.field=value`` overrides of the PolicyConfig the
child builds (``obs.encode_in=workers``, ``threads=2``, ``algo.params.n_epochs=5``). Writes the
per-run figures, the per-round ratios, their median and spread, and the CPU ms per env step of the
main process and the workers together (``/proc``; what throughput follows on a busy machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENCODER = "benchmarks/results/insertion/encoders/insertion.pt"
PPO = {"n_steps": 1024, "batch_size": 64, "n_epochs": 10, "gamma": 0.99, "gae_lambda": 0.95, "learning_rate": 3.0e-4}


def _set(d: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    for k in path:
        d = d.setdefault(k, {})
    d[last] = value


def child(args: argparse.Namespace) -> None:
    """One measurement in this process, with whatever mmrep PYTHONPATH gives; prints one JSON line."""
    import torch
    from stable_baselines3.common.vec_env import VecNormalize

    import mmrep
    from mmrep.config import AlgoConfig, ObsConfig, PolicyConfig
    from mmrep.policy import CLIP_OBS, build_model, build_venv

    raw: dict = {"obs": {"kind": "latent_proprio", "encoder": args.encoder},
                 "algo": {"name": "ppo", "params": dict(PPO)}, "n_envs": args.n_envs, "threads": 1,
                 "device": "cpu", "seed": 0, "eval_episodes": 0, "progress": False}
    for item in args.option or []:
        key, value = item.split("=", 1)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value  # a bare string: workers, main
        _set(raw, key, parsed)
    cfg = PolicyConfig(**{**raw, "obs": ObsConfig(**raw["obs"]), "algo": AlgoConfig(**raw["algo"])})
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    venv = VecNormalize(build_venv(cfg, cfg.n_envs, 0), norm_obs=True, norm_reward=False, clip_obs=CLIP_OBS)
    model = build_model(cfg, venv)
    workers = _worker_pids(venv)
    cpu0, t0 = _cpu_seconds(workers), time.perf_counter()
    model.learn(args.steps)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds(workers) - cpu0
    venv.close()
    print(json.dumps({"mmrep": str(Path(mmrep.__file__).parent.parent), "steps": int(model.num_timesteps),
                      "seconds": seconds, "steps_per_s": model.num_timesteps / seconds,
                      "cpu_ms_per_step": 1000 * cpu / model.num_timesteps}))


def _worker_pids(venv) -> list[int]:
    """The process ids of a (wrapped) SubprocVecEnv's workers. ``mmrep.rl.cpu_time`` does this for
    training; the child keeps its own copy because it also runs against trees from before that module."""
    while not hasattr(venv, "processes") and hasattr(venv, "venv"):
        venv = venv.venv
    return [p.pid for p in getattr(venv, "processes", [])]


def _cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) of this process and of ``pids`` so far (Linux /proc), the load-robust
    measure of the loop's work: under contention, throughput follows the CPU spent per step."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def run_child(tree: Path, options: list[str], args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--steps", str(args.steps),
           "--n-envs", str(args.n_envs), "--encoder", args.encoder]
    for o in options:
        cmd += ["--option", o]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{tree}: {' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(row["mmrep"]).resolve() != tree.resolve():
        raise RuntimeError(f"the child imported mmrep from {row['mmrep']}, not {tree}")
    return row


def tree_commit() -> str:
    """This tree's commit, with ``+dirty`` where tracked files differ from it."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    return (head or "unknown") + ("+dirty" if dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="a0db715", help="git commit of the base tree (archived to a temp dir)")
    ap.add_argument("--base-tree", default=None, help="an existing checkout of the base instead of --base")
    ap.add_argument("--rounds", type=int, default=4, help="measurements of each tree, alternating")
    ap.add_argument("--steps", type=int, default=2048, help="env steps each measurement times (all sub-envs)")
    ap.add_argument("--n-envs", type=int, default=2)
    ap.add_argument("--encoder", default=ENCODER)
    ap.add_argument("--new", nargs="*", default=["obs.encode_in=workers"], help="options of this tree's run")
    ap.add_argument("--base-options", nargs="*", default=[], help="options of the base tree's run")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--option", action="append", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="mmrep_base_") as tmp:
        base = Path(args.base_tree) if args.base_tree else Path(tmp)
        if not args.base_tree:
            archive = subprocess.run(["git", "archive", args.base], cwd=ROOT, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        runs: dict[str, list[dict]] = {"base": [], "new": []}
        for r in range(args.rounds):
            order = ("base", "new") if r % 2 == 0 else ("new", "base")
            for which in order:
                tree, opts = (base, args.base_options) if which == "base" else (ROOT, args.new)
                row = run_child(tree, opts, args)
                runs[which].append(row)
                print(f"round {r} {which}: {row['steps_per_s']:.1f} steps/s, "
                      f"{row['cpu_ms_per_step']:.1f} CPU ms a step", flush=True)
    ratios = [n["steps_per_s"] / b["steps_per_s"] for b, n in zip(runs["base"], runs["new"])]
    base_sps = [r["steps_per_s"] for r in runs["base"]]
    new_sps = [r["steps_per_s"] for r in runs["new"]]
    result = {
        "benchmark": "policy_speedup", "date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
        "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "base": args.base_tree or args.base,
        "new": tree_commit(),
        "steps": args.steps, "n_envs": args.n_envs, "encoder": args.encoder, "ppo": PPO,
        "base_options": args.base_options, "new_options": args.new,
        "base_steps_per_s": base_sps, "new_steps_per_s": new_sps, "ratios_per_round": ratios,
        "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "ratio_of_medians": statistics.median(new_sps) / statistics.median(base_sps),
        "base_median_steps_per_s": statistics.median(base_sps), "new_median_steps_per_s": statistics.median(new_sps),
        "base_cpu_ms_per_step": [r["cpu_ms_per_step"] for r in runs["base"]],
        "new_cpu_ms_per_step": [r["cpu_ms_per_step"] for r in runs["new"]],
    }
    result["cpu_ratio_median"] = statistics.median(result["base_cpu_ms_per_step"]) / statistics.median(
        result["new_cpu_ms_per_step"])
    print(f"base {result['base_median_steps_per_s']:.1f} steps/s, new {result['new_median_steps_per_s']:.1f}; "
          f"ratio median {result['ratio_median']:.2f} (rounds {min(ratios):.2f} to {max(ratios):.2f})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
