"""Where the failed episodes of an evaluation ended, read from committed ``mmrep policy eval`` results (no
rollouts): per setting, peg shape and action mode, pooled over the run folders given, how many failures ran to the
step limit pressed on the block's top (tip less than ``--surface-mm`` below it), how many ended in the
hole short of the insertion depth, and the rest (ended early, or above the block); for those on the
surface, the offset from the hole's axis (mm) and the peak of the step-mean force (N).

    python benchmarks/failure_ends.py benchmarks/results/paper/runs/fused_drc_insertion_s{0,1,2} \
        --settings clean occluder_after_contact --shapes square \
        --out benchmarks/results/paper/failure_ends/fused_drc_insertion.json

Reads ``results.json`` in each run folder's evaluation folders named by ``--evals`` (default ``eval`` and,
where there is one, ``eval_sampled``; ``eval_memory`` holds the camera-memory evaluation). Cells are keyed
by the setting name as written in results.json: read the folders of one kind of evaluation at a time
(plain, camera memory, ``best/``), or they are pooled together.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

KINDS = ("on_surface_to_limit", "in_hole_short", "off_the_block", "above_the_block", "other")


def classify(episode: dict, max_steps: int, surface_mm: float, hole_mm: float) -> str:
    """``on_surface_to_limit``, ``in_hole_short``, ``off_the_block``, ``above_the_block`` or ``other`` for one
    failed episode (an ``episode_results`` entry: ``steps``; ``final_depth_mm`` below the block's top,
    positive down; ``final_offset_mm`` from the hole's axis). Within ``surface_mm`` of the top it is on
    it; below the top and farther than ``hole_mm`` from the axis, the tip has gone down beside the block.
    Missing or non-finite positions (an episode cut for a NaN) are ``other``."""
    depth, offset = episode.get("final_depth_mm"), episode.get("final_offset_mm")
    if depth is None or offset is None or not (np.isfinite(depth) and np.isfinite(offset)):
        return "other"
    if depth <= -surface_mm:
        return "above_the_block"
    if depth < surface_mm:
        return "on_surface_to_limit" if episode["steps"] >= max_steps else "other"
    return "in_hole_short" if offset < hole_mm else "off_the_block"


def summarise(runs: list[Path], settings: list[str] | None, surface_mm: float, max_steps: int, hole_mm: float,
              shapes: list[str] | None = None, evals: tuple[str, ...] = ("eval", "eval_sampled")) -> dict:
    """Failures by (setting, peg shape, mode), pooled over ``runs``."""
    pooled: dict[tuple[str, str, str], dict] = defaultdict(lambda: {"episodes": 0, "failures": [], "files": []})
    for run in runs:
        files = [run / e / "results.json" for e in evals if (run / e / "results.json").exists()]
        if not files:
            raise SystemExit(f"{run}: none of {', '.join(e + '/results.json' for e in evals)}"
                             f" (run `mmrep policy eval policy={run}` first)")
        for f in files:
            try:
                results = json.loads(f.read_text())["results"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise SystemExit(f"{f}: not an `mmrep policy eval` results file ({err!r})") from err
            for r in results:
                if (settings and r["setting"] not in settings) or (shapes and r.get("shape") not in shapes):
                    continue
                if "episode_results" not in r:
                    raise SystemExit(f"{f}: setting {r['setting']!r} has no 'episode_results'")
                cell = pooled[(r["setting"], r.get("shape", "square"), r["mode"])]
                cell["episodes"] += len(r["episode_results"])
                cell["files"].append(str(f))
                cell["failures"] += [e for e in r["episode_results"] if not e["success"]]
    out = {}
    for (setting, shape, mode), cell in sorted(pooled.items()):
        kinds = defaultdict(list)
        for e in cell["failures"]:
            kinds[classify(e, max_steps, surface_mm, hole_mm)].append(e)
        surf = kinds["on_surface_to_limit"]
        offsets = [e["final_offset_mm"] for e in surf]
        out[f"{setting}/{shape}/{mode}"] = {
            "episodes": cell["episodes"],
            "failures": len(cell["failures"]),
            **{k: len(kinds[k]) for k in KINDS},
            "on_surface_offset_mm_median": float(np.median(offsets)) if offsets else None,
            "on_surface_offset_mm_quartiles": [float(q) for q in np.percentile(offsets, [25, 75])] if offsets else None,
            "on_surface_within_3mm": int(sum(o < 3.0 for o in offsets)),
            "on_surface_peak_force_n_median": float(np.median([e["peak_force_step_mean_n"] for e in surf]))
            if surf else None,
            "files": cell["files"],
        }
    return out


def _mm(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="policy run folders with eval/results.json")
    ap.add_argument("--evals", nargs="+", default=["eval", "eval_sampled"], help="evaluation folders to read")
    ap.add_argument("--settings", nargs="+", default=None, help="settings to read (default: all)")
    ap.add_argument("--shapes", nargs="+", default=None, help="peg shapes to read (default: all)")
    ap.add_argument("--surface-mm", type=float, default=1.0, help="depth below the block's top still 'on it'")
    ap.add_argument("--hole-mm", type=float, default=5.0, help="offset below which a tip under the top is in the hole")
    ap.add_argument("--max-steps", type=int, default=200, help="the evaluation's step limit")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    res = summarise(a.runs, a.settings, a.surface_mm, a.max_steps, a.hole_mm, a.shapes, tuple(a.evals))
    for key, v in res.items():
        print(f"{key}: {v['failures']} of {v['episodes']} failed;"
              f" on the surface to the limit {v['on_surface_to_limit']}"
              f" (offset median {_mm(v['on_surface_offset_mm_median'])} mm, {v['on_surface_within_3mm']} within 3 mm),"
              f" in the hole short {v['in_hole_short']}, beside the block {v['off_the_block']},"
              f" above it {v['above_the_block']}, other {v['other']}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"runs": [str(r) for r in a.runs], "surface_mm": a.surface_mm, "hole_mm": a.hole_mm,
                                     "max_steps": a.max_steps, "results": res}, indent=1))
        print("wrote", a.out)


if __name__ == "__main__":
    main()
