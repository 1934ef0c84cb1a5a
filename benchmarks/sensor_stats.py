"""Per-channel standard deviations of F/T and proprioception over a dataset: the scale of the sensor
perturbations (``sim.perturb.SensorStats``'s defaults come from this script on data/quality).

    python benchmarks/sensor_stats.py data/quality --out benchmarks/results/sensor_stats.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np

from sim.dataset_format import episode_groups, list_shards
from sim.observation import proprio8_from_proprio13
from sim.perturb import SensorStats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--max-episodes", type=int, default=400, help="episodes read, spread over the shards")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    force, proprio = [], []
    groups = [(shard, g) for shard in list_shards(Path(args.data)) for g in _groups(shard)]
    pick = np.unique(np.linspace(0, len(groups) - 1, min(args.max_episodes, len(groups))).astype(int))
    for i in pick:
        shard, g = groups[i]
        with h5py.File(shard, "r") as f:
            force.append(f[g]["obs"]["force"][:].reshape(-1, 6))
            proprio.append(f[g]["obs"]["proprio"][:])
    stats = SensorStats.from_arrays(np.concatenate(force), np.concatenate(proprio))
    p8 = proprio8_from_proprio13(np.concatenate(proprio)).std(axis=0)
    result = {"data": args.data, "episodes": len(pick), "force_std": [round(v, 4) for v in stats.force_std],
              "proprio_std": [round(v, 5) for v in stats.proprio_std], "proprio8_std": [round(float(v), 5) for v in p8]}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


def _groups(shard: Path) -> list[str]:
    with h5py.File(shard, "r") as f:
        return [f"data/{name}" for name in episode_groups(f)]


if __name__ == "__main__":
    main()
