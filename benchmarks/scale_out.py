"""Scale-out costs on this machine: Ray collection against the local pool, DDP against one process.

In one run, alternating the variants so that background load hits both alike:
  * collect: the same ``--episodes`` episodes (same seed) collected by the local pool with 2 workers
    and by ``backend=ray`` with 2 actors on a local Ray instance, each in a fresh process. Reported:
    steps/s of the collection itself (the Ray instance's start, a one-off per cluster, is timed apart)
    and ``ray / local``; target: Ray's overhead at most 10% (ratio >= 0.9).
  * ddp: ``mmrep train`` on ``--data`` for ``--batches`` global batches of ``--batch-size``: one
    process with 1 thread, one process with 2 threads, and ``torchrun`` with 2 processes of 1 thread
    (gloo). Reported: training samples/s (from the first to the last batch, start-up excluded), the
    scaling ``ddp_2 / one_process_1_thread`` and the validation metrics' relative difference.

    python benchmarks/scale_out.py --out benchmarks/results/scale_out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

COLLECT_SCRIPT = """
import json, sys, time
from sim.collect import CollectConfig, collect
from sim.collect_ray import init_ray
backend, out, episodes = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = 0.0
if backend == "ray":
    t = time.perf_counter(); ray, _ = init_ray(None); start = time.perf_counter() - t
t = time.perf_counter()
m = collect(CollectConfig(episodes=episodes, workers=2, backend=backend, out=out, seed=11), progress=False)
print(json.dumps({"seconds": time.perf_counter() - t, "steps": m["totals"]["steps"], "start_seconds": start,
                  "checksums": [e["checksum"] for e in m["episodes"]]}))
"""


def run_collect(backend: str, out: Path, episodes: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", COLLECT_SCRIPT, backend, str(out), str(episodes)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"collect {backend} failed:\n{proc.stderr[-2000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["steps_per_s"] = r["steps"] / r["seconds"]
    return r


def bench_collect(episodes: int, repeats: int, tmp: Path) -> dict:
    runs: dict[str, list[dict]] = {"local": [], "ray": []}
    for i in range(repeats):
        for backend in ("local", "ray"):
            r = run_collect(backend, tmp / f"{backend}_{i}", episodes)
            runs[backend].append(r)
            print(f"collect {backend:5s} #{i}: {r['steps_per_s']:.0f} steps/s ({r['seconds']:.1f} s"
                  + (f", Ray start {r['start_seconds']:.1f} s)" if backend == "ray" else ")"))
    best = {b: max(r["steps_per_s"] for r in rs) for b, rs in runs.items()}
    same = runs["local"][0]["checksums"] == runs["ray"][0]["checksums"]
    return {"episodes": episodes, "workers": 2, "repeats": repeats,
            "local_steps_per_s": best["local"], "ray_steps_per_s": best["ray"],
            "ray_over_local": best["ray"] / best["local"], "target": 0.9,
            "ray_start_seconds": min(r["start_seconds"] for r in runs["ray"]),
            "same_checksums": same, "runs": {b: [{k: v for k, v in r.items() if k != "checksums"} for r in rs]
                                             for b, rs in runs.items()}}


def run_train(data: str, out: Path, batches: int, batch_size: int, procs: int, threads: int) -> dict:
    args = [f"data={data}", f"out={out}", "epochs=1", f"batch_size={batch_size}", f"max_batches_per_epoch={batches}",
            "max_val_batches=20", "num_workers=0", f"threads={threads}", "progress=false", f"ckpt_every_steps={10**6}"]
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
           if procs > 1 else [sys.executable]) + ["-m", "mmrep.train", *args]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    final = json.loads((out / "metrics.json").read_text())["final"]
    return {"processes": procs, "threads": threads, "wall_seconds": wall, "train_seconds": final["train_seconds"],
            "samples_per_s": batches * batch_size / final["train_seconds"], "final": final}


def bench_ddp(data: str, batches: int, batch_size: int, tmp: Path) -> dict:
    variants = {"one_process_1_thread": (1, 1), "one_process_2_threads": (1, 2), "ddp_2_processes": (2, 1)}
    rows = {}
    for name, (procs, threads) in variants.items():
        rows[name] = run_train(data, tmp / name, batches, batch_size, procs, threads)
        print(f"train {name:22s}: {rows[name]['samples_per_s']:.0f} samples/s")
    one, ddp = rows["one_process_1_thread"], rows["ddp_2_processes"]
    diff = {k: abs(ddp["final"][k] - one["final"][k]) / max(1.0, abs(one["final"][k]))
            for k in one["final"] if k.startswith(("loss/", "contact_f1", "alignment_accuracy", "flow_epe"))}
    return {"batches": batches, "global_batch_size": batch_size, "data": data,
            "ddp_over_one_process_1_thread": ddp["samples_per_s"] / one["samples_per_s"],
            "ddp_over_one_process_2_threads": ddp["samples_per_s"] / rows["one_process_2_threads"]["samples_per_s"],
            "metrics_max_rel_diff": max(diff.values()), "metrics_rel_diff": diff,
            "runs": {k: {kk: vv for kk, vv in v.items() if kk != "final"} for k, v in rows.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="*", default=["collect", "ddp"], choices=["collect", "ddp"])
    ap.add_argument("--episodes", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", default="data/quality")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/scale_out.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmrep_scale_out_"))
    result = {"benchmark": "scale_out", "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "torch": torch.__version__,
              "load_average_at_start": os.getloadavg(), "command": " ".join(["python", *sys.argv])}
    try:
        if "collect" in args.parts:
            result["collect"] = bench_collect(args.episodes, args.repeats, tmp)
        if "ddp" in args.parts:
            result["ddp"] = bench_ddp(args.data, args.batches, args.batch_size, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.get("collect", {}).items() if k != "runs"}, indent=1))
    print(json.dumps({k: v for k, v in result.get("ddp", {}).items() if k not in ("runs", "metrics_rel_diff")},
                     indent=1))


if __name__ == "__main__":
    main()
