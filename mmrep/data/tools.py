"""``mmrep data verify | info | export``: check a dataset, summarise it, convert it to the paper's layout."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mmrep.data.sources import REFERENCE_KEYS, proprio8_from_sim, yaw_of
from sim.recording import read_episode_arrays, specs_from_group
from sim.schema import DATA_GROUP, EPISODE_PREFIX, episode_checksum, validate_episode


def _shards(path: Path) -> list[Path]:
    return sorted(path.glob("shard_*.h5")) if path.is_dir() else [path]


def verify(path: str | Path) -> list[str]:
    """Every problem found in a dataset folder or shard: unreadable files, partial episodes, schema
    violations (keys, shapes, dtypes), NaN/inf, checksum mismatches, manifest entries that do not
    match the shards. Each names its file and episode. Empty when the dataset is sound."""
    path = Path(path)
    problems: list[str] = []
    if not path.exists():
        return [f"{path}: does not exist"]
    shards = _shards(path)
    if not shards:
        return [f"{path}: no shard_*.h5 files"]
    seen: dict[str, tuple[str, str]] = {}
    for shard in shards:
        try:
            f = h5py.File(shard, "r")
        except OSError as err:
            problems.append(f"{shard}: cannot be opened ({err}); truncated or corrupted")
            continue
        with f:
            if DATA_GROUP not in f:
                problems.append(f"{shard}: no '{DATA_GROUP}' group (not an mmrep shard)")
                continue
            for name in f[DATA_GROUP]:
                group = f[DATA_GROUP][name]
                where = f"{shard}:{DATA_GROUP}/{name}"
                if not name.startswith(EPISODE_PREFIX):
                    problems.append(f"{where}: unexpected entry")
                    continue
                if "checksum" not in group.attrs:
                    problems.append(f"{where}: partial episode (no checksum; a crash cut it short)")
                    continue
                try:
                    specs = specs_from_group(group)
                    arrays = read_episode_arrays(group, specs)
                except (OSError, KeyError, ValueError) as err:
                    problems.append(f"{where}: unreadable ({err})")
                    continue
                num_steps = int(group.attrs["num_steps"])
                problems += [f"{where}: {p}" for p in validate_episode(arrays, specs, num_steps)]
                if episode_checksum(arrays, specs) != group.attrs["checksum"]:
                    problems.append(f"{where}: checksum mismatch (content changed after writing)")
                seen[name] = (shard.name, str(group.attrs["checksum"]))
    manifest = path / "manifest.json" if path.is_dir() else None
    if manifest is not None:
        if not manifest.exists():
            problems.append(f"{manifest}: missing (run the collection again to finish it)")
        else:
            m = json.loads(manifest.read_text())
            for e in m["episodes"]:
                got = seen.get(e["name"])
                if got is None:
                    problems.append(f"{manifest}: lists {e['name']} in {e['shard']}, not found intact")
                elif got != (e["shard"], e["checksum"]):
                    problems.append(f"{manifest}: {e['name']} differs from {got[0]} (shard or checksum)")
    return problems


def info(path: str | Path) -> dict[str, Any]:
    """Episodes, steps, size on disk, per-shape and per-policy counts, contact and success ratios."""
    path = Path(path)
    shards = _shards(path)
    shapes, policies = Counter(), Counter()
    episodes = steps = successes = contact_steps = 0
    for shard in shards:
        with h5py.File(shard, "r") as f:
            for name in f.get(DATA_GROUP, {}):
                g = f[DATA_GROUP][name]
                if "checksum" not in g.attrs:
                    continue
                episodes += 1
                steps += int(g.attrs["num_steps"])
                successes += bool(g.attrs["success"])
                shapes[str(g.attrs["peg_shape"])] += 1
                policies[str(g.attrs["policy"])] += 1
                contact_steps += int(g["obs/contact"][1:].any(axis=1).sum())
    size = sum(p.stat().st_size for p in shards)
    out: dict[str, Any] = {
        "path": str(path), "shards": len(shards), "episodes": episodes, "steps": steps,
        "size_bytes": size, "size_per_step_bytes": size / max(steps, 1),
        "per_shape": dict(sorted(shapes.items())), "per_policy": dict(sorted(policies.items())),
        "contact_ratio": contact_steps / max(steps, 1), "success_ratio": successes / max(episodes, 1),
    }
    manifest = path / "manifest.json" if path.is_dir() else None
    if manifest is not None and manifest.exists():
        m = json.loads(manifest.read_text())
        out["splits"] = {k: len(v) for k, v in m["splits"].items()}
        out["complete"] = m["complete"]
    return out


def format_info(d: dict[str, Any]) -> str:
    """Human-readable ``info`` for the terminal and the demo report."""
    lines = [
        f"dataset      {d['path']}",
        f"episodes     {d['episodes']} in {d['shards']} shard(s)"
        + (f"; split train {d['splits']['train']} / valid {d['splits']['valid']}"
           if "splits" in d else ""),
        f"steps        {d['steps']} (training samples)",
        f"size         {d['size_bytes'] / 2**20:.1f} MiB "
        f"({d['size_per_step_bytes'] / 1024:.1f} KiB per step)",
        f"per shape    {', '.join(f'{k} {v}' for k, v in d['per_shape'].items())}",
        f"per policy   {', '.join(f'{k} {v}' for k, v in d['per_policy'].items())}",
        f"contact      {100 * d['contact_ratio']:.1f}% of steps",
        f"success      {100 * d['success_ratio']:.1f}% of episodes",
    ]
    if "complete" in d and not d["complete"]:
        lines.append("incomplete   the manifest lists missing episodes: run the same collect again")
    return "\n".join(lines)


def export_reference(path: str | Path, out: str | Path, window: int = 50) -> list[Path]:
    """Write a native dataset in the paper's layout: one file per ``window`` observation rows.

    Every key of ``REFERENCE_KEYS`` is written with ``window`` rows. Episodes are cut into whole
    windows (a tail shorter than a window is left out). ``proprio`` is mmrep's ``proprio8``;
    ``ee_yaw`` is the quaternion (x, y, z, w) of the yaw alone and ``ee_yaw_delta`` that of the yaw
    change to the next row; ``action`` row t is the action taken at t (zero yaw appended for 3-D
    actions; zero after the episode's last step). Needs 50 F/T readings per step (1 kHz physics).
    """
    path, out = Path(path), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for shard in _shards(path):
        with h5py.File(shard, "r") as f:
            for name in sorted(f.get(DATA_GROUP, {})):
                g = f[DATA_GROUP][name]
                if "checksum" not in g.attrs or "obs/rgb" not in g or "flow" not in g:
                    continue
                force = g["obs/force"][()]
                if force.shape[1] != 50:
                    raise ValueError(f"{shard}:{name} has {force.shape[1]} F/T readings per step; the "
                                     f"reference layout needs 50 (collect at physics_hz=1000)")
                arrays = _reference_arrays(g, force)
                rows = arrays["image"].shape[0]
                for k in range(rows // window):
                    sl = slice(k * window, (k + 1) * window)
                    target = out / f"{shard.stem}_{name}_{k:03d}.h5"
                    with h5py.File(target, "w") as r:
                        for key in REFERENCE_KEYS:
                            r.create_dataset(key, data=arrays[key][sl])
                    written.append(target)
    return written


def _reference_arrays(g: h5py.Group, force: np.ndarray) -> dict[str, np.ndarray]:
    proprio = g["obs/proprio"][()]
    rows = proprio.shape[0]
    yaw = yaw_of(proprio[:, 3:7])
    actions = g["actions"][()]
    action = np.zeros((rows, 4), np.float32)
    action[: len(actions), : actions.shape[1]] = actions
    dyaw = np.append(np.diff(yaw), 0.0)

    def yaw_quat(a):
        zero = np.zeros_like(a)
        return np.stack([zero, zero, np.sin(a / 2), np.cos(a / 2)], 1).astype(np.float32)

    flow = np.zeros((rows, *g["flow"].shape[1:]), np.float32)
    flow[: rows - 1] = g["flow"][()]
    return {
        "action": action, "contact": g["obs/contact"][()].astype(np.float32),
        "depth_data": g["obs/depth"][()].astype(np.float32), "ee_forces_continuous": force,
        "ee_ori": proprio[:, 3:7], "ee_pos": proprio[:, :3], "ee_vel": proprio[:, 7:10],
        "ee_vel_ori": proprio[:, 10:13], "ee_yaw": yaw_quat(yaw), "ee_yaw_delta": yaw_quat(dyaw),
        "image": g["obs/rgb"][()], "joint_pos": g["obs/joint_pos"][()], "joint_vel": g["obs/joint_vel"][()],
        "optical_flow": flow, "proprio": proprio8_from_sim(proprio),
    }
