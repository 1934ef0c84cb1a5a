"""Dataset formats: the cost of ``mmrep data export`` to LeRobot (with and without the exact flow) and to the
robomimic view, beside the native HDF5: export seconds, size on disk, and training samples/s read through
``MultimodalDataset`` from each (one process, no cache, shuffled). Writes JSON.

    python benchmarks/formats.py --episodes 8 --out benchmarks/results/formats/datasets.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mmrep.data import MultimodalDataset
from mmrep.formats.lerobot import export_lerobot
from mmrep.formats.robomimic import export_robomimic
from sim.collect import CollectConfig, collect


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def read_rate(path: Path, samples: int) -> float:
    ds = MultimodalDataset(path, None, seed=0)
    order = np.random.default_rng(0).permutation(len(ds))[:samples]
    ds[int(order[0])]  # first open
    t0 = time.perf_counter()
    for i in order:
        ds[int(i)]
    return len(order) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=50)
    p.add_argument("--samples", type=int, default=200, help="samples timed per read rate")
    p.add_argument("--out", default="benchmarks/results/formats/datasets.json")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mmrep_formats_"))
    try:
        data = work / "sim"
        collect(CollectConfig(episodes=args.episodes, out=str(data), workers=1, env={"max_steps": args.max_steps}),
                progress=False)
        native = sum(size(s) for s in data.glob("shard_*.h5"))
        rows = {"hdf5": {"bytes": native, "export_seconds": 0.0, "read_samples_per_s": read_rate(data, args.samples)}}
        for name, flow in (("lerobot", True), ("lerobot_no_flow", False)):
            t0 = time.perf_counter()
            info = export_lerobot(data, work / name, flow=flow)
            rows[name] = {"bytes": size(work / name), "export_seconds": time.perf_counter() - t0}
            if flow:
                rows[name]["read_samples_per_s"] = read_rate(work / name, args.samples)
        t0 = time.perf_counter()
        export_robomimic(data, work / "robomimic.hdf5")
        rows["robomimic_view"] = {"bytes": size(work / "robomimic.hdf5"), "export_seconds": time.perf_counter() - t0}
        for r in rows.values():
            r["bytes_vs_hdf5"] = r["bytes"] / native
        result = {"what": "export cost and size against the native HDF5 (lzf); read rate through MultimodalDataset",
                  "episodes": args.episodes, "frames": info["total_frames"], "image_size": 128,
                  "lerobot_codebase_version": info["codebase_version"], "formats": rows,
                  "machine": {"python": platform.python_version(), "processor": platform.processor()},
                  "date": time.strftime("%Y-%m-%d")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
