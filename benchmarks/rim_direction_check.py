"""Does a dataset's recorded F/T carry the hole's direction where the probes look (near the hole and
touching)? The scripted expert's own reading of the rim moment (``sim.peg_hole_experts.rim_direction``:
the step's mean F/T rotated to the world, centre of pressure -> direction) against the true direction to
the hole, on the held-out episodes; then the same where the expert reads it (pressing: world F_z above
10 N, the tip 1.5-8 mm off the hole's axis, on the rim).

    python benchmarks/rim_direction_check.py data/touch_quality \
        --out benchmarks/results/touch_task/probe/rim_direction.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mmrep.probe import NEAR_M, load_steps
from sim.peg_hole_experts import rim_direction
from sim.robot import quat_to_matrix


def angles(force: np.ndarray, proprio: np.ndarray, offset: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Angles (deg) between the rim-moment direction and the true one (tip -> hole) at ``rows``, and
    how many rows gave no reading (too little force or a flat landing)."""
    out, none = [], 0
    for i in rows:
        d = rim_direction(force[i], proprio[i, 3:7])
        true = -offset[i, :2]
        r = float(np.linalg.norm(true))
        if d is None or r < 1e-4:
            none += 1
            continue
        out.append(np.degrees(np.arccos(np.clip(np.dot(d, true / r), -1.0, 1.0))))
    return np.asarray(out), none


def summary(a: np.ndarray, rows: np.ndarray, none: int) -> dict:
    return {"samples": int(len(rows)), "no_reading": none, "median_angle_deg": float(np.median(a)),
            "within_45_deg": float(np.mean(a < 45)), "within_90_deg": float(np.mean(a < 90))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--out", default="outputs/rim_direction.json")
    args = ap.parse_args()
    v = load_steps(args.data, "valid", ("force", "proprio"))
    force, proprio = v.obs["force"], v.obs["proprio"]
    touching = np.flatnonzero((np.linalg.norm(v.offset, axis=1) < NEAR_M) & (v.contact > 0.5))
    pressing = []
    for i in touching:  # what the expert reads: pressing down on the rim
        fz = (quat_to_matrix(proprio[i, 3:7].astype(np.float64)) @ force[i].mean(0)[:3].astype(np.float64))[2]
        if abs(fz) > 10.0 and 0.0015 < np.linalg.norm(v.offset[i, :2]) < 0.008:
            pressing.append(i)
    pressing = np.asarray(pressing, dtype=int)
    result = {"data": args.data, "note": "a random direction gives a median of 90 deg, 25% within 45 deg"}
    for name, rows in (("near_and_touching", touching), ("pressing_on_rim", pressing)):
        a, none = angles(force, proprio, v.offset, rows)
        result[name] = summary(a, rows, none)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
