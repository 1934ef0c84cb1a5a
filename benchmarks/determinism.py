"""Same seed, same dataset whichever machine: collection under other numeric kernels, compared.

A cluster mixes CPUs, and each CPU makes its libraries pick other kernels. This script collects the
same episodes once per variant, each in a fresh process whose environment selects other kernels the
way another CPU would, and compares every episode's arrays to the first variant's:

  * ``default``: this machine as it is;
  * ``openblas_prescott`` / ``openblas_sandybridge``: OpenBLAS's kernels of older CPUs
    (``OPENBLAS_CORETYPE``), whose sums run in other orders;
  * ``numpy_baseline_simd``: NumPy's runtime-dispatched SIMD loops off (``NPY_DISABLE_CPU_FEATURES``),
    as on a CPU without AVX2 / AVX-512;
  * ``workers_2``: 2 worker processes instead of 1;
  * ``ray_2_actors``: ``backend=ray`` with 2 actors on a local Ray instance (the driver writes);
  * ``libm_no_fma``: glibc's libm without its FMA / AVX2 variants (``GLIBC_TUNABLES``), as on a CPU
    without FMA (x86 before Haswell / Piledriver). Outside the guarantee: PyBullet itself calls libm's
    sin, cos, atan2, acos, exp and pow, whose FMA and SSE2 variants differ in the last bit, so this
    variant is expected to differ and reports where. A cluster mixing such CPUs pins one variant on
    every node (docs/results/scale-out.md).

The guarantee holds when every variant but the last is identical. A variant whose environment this
machine cannot apply is reported as such, not as a pass. A one-off check, kept out of the test suite
(a few minutes). Writes JSON.

    python benchmarks/determinism.py --episodes 6 --out benchmarks/results/determinism.json
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

import numpy as np

from sim.dataset_format import dataset_arrays, read_manifest

NUMPY_DISPATCHED = "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"  # NumPy 2.4's groups above its x86-64-v2 baseline
LIBM_SSE2 = "glibc.cpu.hwcaps=-AVX2,-FMA"  # glibc then resolves libm to its baseline (SSE2) variants
VARIANTS: dict[str, tuple[dict[str, str], list[str]]] = {
    "default": ({}, []),
    "openblas_prescott": ({"OPENBLAS_CORETYPE": "Prescott"}, []),
    "openblas_sandybridge": ({"OPENBLAS_CORETYPE": "Sandybridge"}, []),
    "numpy_baseline_simd": ({"NPY_DISABLE_CPU_FEATURES": NUMPY_DISPATCHED}, []),
    "workers_2": ({}, ["workers=2"]),
    "ray_2_actors": ({}, ["backend=ray", "workers=2"]),
    "libm_no_fma": ({"GLIBC_TUNABLES": LIBM_SSE2}, []),
}
OUTSIDE_GUARANTEE = {"libm_no_fma"}


def collect(out: Path, episodes: int, seed: int, env: dict[str, str], overrides: list[str]) -> float:
    """Run ``mmrep collect`` in a fresh process with ``env`` added to this one's; seconds taken."""
    cmd = [sys.executable, "-m", "mmrep.cli", "collect", f"episodes={episodes}", f"seed={seed}",
           "workers=1", f"out={out}", "progress=false", *overrides]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def compare(ref: dict[str, dict[str, np.ndarray]], other: dict[str, dict[str, np.ndarray]]) -> dict:
    """Episodes identical array by array, and where the others first differ."""
    differing = []
    for name, arrays in ref.items():
        theirs = other.get(name)
        if theirs is None:
            differing.append({"episode": name, "why": "missing"})
            continue
        for key, a in arrays.items():
            b = theirs.get(key)
            if b is None or a.shape != b.shape or not np.array_equal(a, b):
                diff = None if b is None or a.shape != b.shape else float(
                    np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
                differing.append({"episode": name, "array": key, "max_abs_diff": diff})
                break
    return {"episodes": len(ref), "identical": len(ref) - len(differing), "differing": differing}


def applies(env: dict[str, str]) -> str | None:
    """Why ``env`` cannot take effect here, or None. Checked in a fresh process, like the collection."""
    if "NPY_DISABLE_CPU_FEATURES" in env:
        probe = ("import numpy, numpy._core._multiarray_umath as m; "
                 "print(','.join(k for k, v in m.__cpu_features__.items() if v))")
        on = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **env},
                            capture_output=True, text=True)
        if on.returncode != 0:
            return on.stderr.strip().splitlines()[-1]
        still = [f for f in env["NPY_DISABLE_CPU_FEATURES"].split() if f in on.stdout.split(",")]
        if still:
            return f"still enabled: {still}"
    if "GLIBC_TUNABLES" in env:
        loader = Path("/lib64/ld-linux-x86-64.so.2")
        if not loader.exists():
            return f"no {loader} to check the tunable with"

        def active(e: dict[str, str]) -> list[str]:
            out = subprocess.run([str(loader), "--list-diagnostics"], env=e, capture_output=True, text=True).stdout
            return [line for line in out.splitlines() if line.startswith("x86.cpu_features")]

        if active(dict(os.environ)) == active({**os.environ, **env}):
            return "glibc reports the same active CPU features with the tunable"
    return None


BARE_PYBULLET = """
import hashlib, pybullet as p, pybullet_data
p.connect(p.DIRECT)
p.setAdditionalSearchPath(pybullet_data.getDataPath())
p.setGravity(0, 0, -9.81)
p.loadURDF("plane.urdf")
arm = p.loadURDF("kuka_iiwa/model.urdf")
p.setJointMotorControlArray(arm, list(range(7)), p.VELOCITY_CONTROL, forces=[0.0] * 7)
cube = p.loadURDF("cube_small.urdf", [0.5, 0.0, 0.3])
h = hashlib.sha256()
for _ in range(2000):
    p.setJointMotorControlArray(arm, list(range(7)), p.TORQUE_CONTROL, forces=[1.0, -2.0, 0.5, 1.5, 0.2, 0.3, 0.1])
    p.stepSimulation()
    h.update(repr([s[:2] for s in p.getJointStates(arm, list(range(7)))]).encode())
    h.update(repr(p.getBasePositionAndOrientation(cube)).encode())
print(h.hexdigest())
"""


def bare_pybullet(env: dict[str, str]) -> str:
    """Hash of 2000 steps of a torque-driven arm and a falling cube in PyBullet alone (no mmrep code,
    no NumPy arithmetic): where it changes with ``env``, PyBullet's own numerics do."""
    proc = subprocess.run([sys.executable, "-c", BARE_PYBULLET], env={**os.environ, **env},
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/determinism.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmrep_determinism_"))
    results: dict[str, dict] = {}
    try:
        ref = None
        for name in args.variants:
            env, overrides = VARIANTS[name]
            why_not = applies(env)
            if why_not:
                results[name] = {"env": env, "overrides": overrides, "applied": False, "why": why_not}
                print(f"{name:22s} not applied here: {why_not}")
                continue
            seconds = collect(tmp / name, args.episodes, args.seed, env, overrides)
            arrays = dataset_arrays(tmp / name)
            if ref is None:
                ref_name, ref = name, arrays
            row = {"env": env, "overrides": overrides, "applied": True, "seconds": round(seconds, 1),
                   "checksums": [e["checksum"] for e in read_manifest(tmp / name)["episodes"]],
                   "against": ref_name, **compare(ref, arrays)}
            row["bare_pybullet_same"] = bare_pybullet(env) == bare_pybullet({})
            results[name] = row
            print(f"{name:22s} {row['identical']}/{row['episodes']} episodes identical to {ref_name}"
                  f" ({seconds:.0f} s); PyBullet alone identical: {row['bare_pybullet_same']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    applied = [r for name, r in results.items() if r["applied"] and name not in OUTSIDE_GUARANTEE]
    summary = {"benchmark": "determinism", "episodes": args.episodes, "seed": args.seed,
               "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
               "numpy": np.__version__, "guarantee_holds": all(r["identical"] == r["episodes"] for r in applied),
               "outside_guarantee": sorted(OUTSIDE_GUARANTEE), "variants": results,
               "command": f"python benchmarks/determinism.py --episodes {args.episodes} --seed {args.seed}"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"identical where guaranteed: {summary['guarantee_holds']}  -> {args.out}")


if __name__ == "__main__":
    main()
