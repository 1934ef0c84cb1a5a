"""The on-disk dataset format, defined once (h5py and numpy, no torch).

The recorder and the collector write it, the readers in ``mmrep.data`` read it, and ``mmrep data
verify`` / ``mmrep data info`` check and summarise it; each rule below lives only here.

A dataset is a folder::

    <out>/shard_NNN.h5       one HDF5 file per writer process (HDF5 has a single writer)
    <out>/manifest.json      index of the complete episodes, their checksums and the split
    <out>/collect_config.json the settings that made it (a resume must use the same)

Layout of one shard file (robomimic-like)::

    /data/ep_NNNNNN/                       one group per episode; attrs (JSON strings) below
        obs/rgb       (T+1, S, S, 3) uint8     camera, HWC
        obs/depth     (T+1, S, S, 1) float16   metres along the optical axis
        obs/force     (T+1, n, 6)    float32   F/T per physics substep (N, N m), sensor frame, tared; a row a chunk
        obs/proprio   (T+1, 13)      float32   PROPRIO13 (``sim.observation``)
        obs/contact   (T+1, n)       int8      peg-block contact per substep
        obs/joint_pos (T+1, 7)       float32   rad
        obs/joint_vel (T+1, 7)       float32   rad/s
        actions       (T, A)         float32   in [-1, 1]
        rewards       (T,)           float32
        dones         (T,)           bool      terminated (success) at that step
        flow          (T, S, S, 2)   float16   exact optical flow from frame t to t+1, pixels (dcol, drow)
    /mask/train, /mask/valid                   episode names of each split (bytes)

Observations are stored at every time step 0..T (T+1 rows, the last is the final state), so a
training sample (t, t+1) reads row t and row t+1 of the same arrays.

Episode attributes: ``index`` (int), ``seed`` (int), ``peg_shape``, ``policy``, ``success`` (bool),
``num_steps`` (int), ``checksum`` (sha256 hex of the arrays, see ``episode_checksum``), ``env_config``
and ``policy_config`` (JSON). File attributes: ``schema_version``, ``versions`` (JSON: package
versions), ``created_by``. An episode is complete only once its ``checksum`` attribute exists
(``is_complete``): the writer sets it last and flushes, so a crash mid-episode leaves a group that
every reader skips and the next writer removes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sim.atomic import write_text_atomic

SCHEMA_VERSION = 1
EPISODE_PREFIX = "ep_"
DATA_GROUP = "data"
MASK_GROUP = "mask"
SPLITS = ("train", "valid")
MANIFEST = "manifest.json"
COLLECT_CONFIG = "collect_config.json"
SHARD_GLOB = "shard_*.h5"
CHECKSUM_ATTR = "checksum"


# ------------------------------------------------------------------------------------------ arrays
@dataclass(frozen=True)
class ArraySpec:
    """One array of an episode: its path inside the episode group, per-row shape, dtype, and whether
    it has a row per observation (T+1) or per action (T)."""

    path: str
    row_shape: tuple[int, ...]
    dtype: str
    per_observation: bool
    row_chunks: bool = False  # one row per chunk: arrays read a row at a time (images, F/T)

    def rows(self, num_steps: int) -> int:
        return num_steps + 1 if self.per_observation else num_steps


def episode_specs(image_size: int, n_substeps: int, action_dim: int, camera: bool = True,
                  flow: bool = True) -> list[ArraySpec]:
    """The arrays of one episode for an env with these settings, in canonical (checksum) order."""
    s, n = image_size, n_substeps
    specs = []
    if camera:
        specs += [ArraySpec("obs/rgb", (s, s, 3), "uint8", True, row_chunks=True),
                  ArraySpec("obs/depth", (s, s, 1), "float16", True, row_chunks=True)]
    specs += [
        ArraySpec("obs/force", (n, 6), "float32", True, row_chunks=True),
        ArraySpec("obs/proprio", (13,), "float32", True),
        ArraySpec("obs/contact", (n,), "int8", True),
        ArraySpec("obs/joint_pos", (7,), "float32", True),
        ArraySpec("obs/joint_vel", (7,), "float32", True),
        ArraySpec("actions", (action_dim,), "float32", False),
        ArraySpec("rewards", (), "float32", False),
        ArraySpec("dones", (), "bool", False),
    ]
    if flow:
        specs.append(ArraySpec("flow", (s, s, 2), "float16", False, row_chunks=True))
    return specs


def specs_for_env_config(env_config) -> list[ArraySpec]:
    """The arrays recorded from an env with this ``EnvConfig`` (camera, flow, substeps, action size)."""
    return episode_specs(env_config.image_size, env_config.n_substeps, env_config.action_dim,
                         camera=env_config.use_camera, flow=env_config.compute_flow)


def specs_from_group(group: h5py.Group) -> list[ArraySpec]:
    """The specs matching an episode group as stored (its env config and the arrays present)."""
    env = json.loads(group.attrs["env_config"])
    n = int(round(env["physics_hz"] / env["control_hz"]))
    return episode_specs(env["image_size"], n, env["action_dim"], camera="obs/rgb" in group,
                         flow="flow" in group)


def episode_name(index: int) -> str:
    """Group name of episode ``index`` (``ep_000042``)."""
    return f"{EPISODE_PREFIX}{index:06d}"


def shard_name(writer: int) -> str:
    """File name of writer ``writer``'s shard (``shard_003.h5``)."""
    return f"shard_{writer:03d}.h5"


def list_shards(path: Path) -> list[Path]:
    """The shard files of a dataset folder (sorted), or ``[path]`` for one shard file."""
    path = Path(path)
    return sorted(path.glob(SHARD_GLOB)) if path.is_dir() else [path]


def episode_checksum(arrays: dict[str, np.ndarray], specs: list[ArraySpec]) -> str:
    """sha256 over the arrays' shapes, dtypes and bytes, in the specs' order (content identity:
    the same episode gives the same checksum whatever file, worker or compression it landed in)."""
    h = hashlib.sha256()
    for spec in specs:
        a = np.ascontiguousarray(arrays[spec.path])
        h.update(f"{spec.path}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def validate_episode(arrays: dict[str, np.ndarray], specs: list[ArraySpec], num_steps: int) -> list[str]:
    """Problems with an episode's arrays (missing keys, shapes, dtypes, NaN/inf); empty when fine."""
    problems = []
    for spec in specs:
        if spec.path not in arrays:
            problems.append(f"missing {spec.path}")
            continue
        a = arrays[spec.path]
        want = (spec.rows(num_steps), *spec.row_shape)
        if tuple(a.shape) != want:
            problems.append(f"{spec.path}: shape {tuple(a.shape)}, expected {want}")
        if a.dtype != np.dtype(spec.dtype):
            problems.append(f"{spec.path}: dtype {a.dtype}, expected {spec.dtype}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            problems.append(f"{spec.path}: contains NaN or inf")
    return problems


def read_episode_arrays(group: h5py.Group, specs: list[ArraySpec]) -> dict[str, np.ndarray]:
    """All arrays of one episode group, as numpy (for verification and export)."""
    return {spec.path: group[spec.path][()] for spec in specs if spec.path in group}


# ------------------------------------------------------------------------------------ completeness
def mark_complete(group: h5py.Group, checksum: str) -> None:
    """Mark an episode group complete: its checksum attribute, written after everything else."""
    group.attrs[CHECKSUM_ATTR] = checksum


def is_complete(group: h5py.Group) -> bool:
    """Whether an episode group was finished by its writer (a crash leaves it without a checksum)."""
    return CHECKSUM_ATTR in group.attrs


def episode_groups(f: h5py.File, complete: bool | None = True) -> list[str]:
    """Sorted names of the episode groups of an open shard: complete ones (default), partial ones
    (``complete=False``) or all (``None``)."""
    data = f.get(DATA_GROUP)
    if data is None:
        return []
    names = sorted(n for n in data if n.startswith(EPISODE_PREFIX))
    if complete is None:
        return names
    return [n for n in names if is_complete(data[n]) == complete]


def episode_record(group: h5py.Group, shard: str) -> dict[str, Any]:
    """The manifest entry of a complete episode group (without its split)."""
    a = group.attrs
    return {"name": group.name.rsplit("/", 1)[-1], "shard": shard, "checksum": str(a[CHECKSUM_ATTR]),
            "num_steps": int(a["num_steps"]), "seed": int(a["seed"]), "peg_shape": str(a["peg_shape"]),
            "policy": str(a["policy"]), "success": bool(a["success"])}


def scan_shards(out: Path, quarantine: bool = False, wait: float = 10.0,
                locking: bool = True) -> dict[int, dict[str, Any]]:
    """Complete episodes in the shards of ``out``: index -> manifest entry (``episode_record``).

    A shard still held by a writer (e.g. a worker orphaned by a killed run, which stops within a
    control step) is waited for up to ``wait`` seconds. With ``quarantine`` (the collector, which owns
    the folder), a shard that cannot be opened at all (a crash in the middle of a flush) is moved
    aside to ``*.corrupt-<time>`` with a warning and its episodes are collected again (they are
    deterministic); without it, the error propagates. ``locking=False`` peeks at shards that are
    being written (progress monitoring; what it sees may be a moment old).
    """
    found: dict[int, dict[str, Any]] = {}
    for shard in list_shards(Path(out)):
        deadline = time.monotonic() + wait
        while True:
            try:
                with h5py.File(shard, "r", locking=locking) as f:
                    for name in episode_groups(f):
                        group = f[DATA_GROUP][name]
                        found[int(group.attrs["index"])] = episode_record(group, shard.name)
                break
            except OSError as err:
                if "lock" in str(err) and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                if "lock" in str(err):
                    raise RuntimeError(f"shard {shard} is being written by another process") from err
                if not quarantine:
                    raise
                aside = shard.with_suffix(f".h5.corrupt-{int(time.time())}")
                shutil.move(shard, aside)
                warnings.warn(f"shard {shard} could not be read ({err}); moved to {aside.name}, its "
                              f"episodes will be collected again", stacklevel=2)
                break
    return found


# -------------------------------------------------------------------------------- split, manifest
def split_of(n_items: int, seed: int, valid_fraction: float, at_least_one: bool = False) -> list[str]:
    """"train" or "valid" for each of ``n_items`` items (episodes or reference files): a seeded
    permutation, the first ``round(valid_fraction x n)`` of it valid. ``at_least_one`` gives a small
    set a valid item whenever ``valid_fraction > 0`` and there are two items or more."""
    order = np.random.default_rng([seed, 7919]).permutation(n_items)
    n_valid = int(round(valid_fraction * n_items))
    if at_least_one and valid_fraction > 0 and n_items >= 2:
        n_valid = max(n_valid, 1)
    valid = set(order[:n_valid].tolist())
    return ["valid" if i in valid else "train" for i in range(n_items)]


def write_masks(shard: Path, masks: dict[str, list[str]]) -> None:
    """Write ``mask/<split>`` (episode names) into a shard, replacing earlier masks."""
    with h5py.File(shard, "a") as f:
        group = f.require_group(MASK_GROUP)
        for split, names in masks.items():
            if split in group:
                del group[split]
            group.create_dataset(split, data=np.array(names, dtype="S"))


def read_mask(f: h5py.File, split: str, where: str = "") -> set[str]:
    """The episode names of ``mask/<split>`` of an open shard; ValueError naming the file if absent."""
    key = f"{MASK_GROUP}/{split}"
    if key not in f:
        raise ValueError(f"{where or f.filename} has no {key}")
    return {n.decode() for n in f[key][()]}


def write_manifest(out: Path, config: dict[str, Any], planned: int, splits: list[str]) -> dict[str, Any]:
    """Index the shards' complete episodes, write ``mask/*`` into each shard and ``manifest.json``
    atomically; return the manifest. ``splits[i]`` is the split of episode ``i`` of ``planned``."""
    out = Path(out)
    found = scan_shards(out)
    episodes = [{"index": i, **found[i], "split": splits[i] if i < len(splits) else "train"}
                for i in sorted(found)]
    by_shard: dict[str, dict[str, list[str]]] = {}
    for e in episodes:
        by_shard.setdefault(e["shard"], {s: [] for s in SPLITS})[e["split"]].append(e["name"])
    for shard, masks in by_shard.items():
        write_masks(out / shard, masks)
    missing = [i for i in range(planned) if i not in found]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "complete": not missing,
        "missing_episodes": missing,
        "config": config,
        "shards": sorted(by_shard),
        "episodes": episodes,
        "splits": {s: [e["name"] for e in episodes if e["split"] == s] for s in SPLITS},
        "totals": {"episodes": len(episodes), "steps": sum(e["num_steps"] for e in episodes),
                   "successes": sum(e["success"] for e in episodes)},
    }
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1), fsync=False)
    return manifest


def is_dataset_folder(path: Path) -> bool:
    return (Path(path) / MANIFEST).exists()


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a dataset folder; FileNotFoundError saying what to do when it is missing."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{folder} has no {MANIFEST} (not a dataset folder, or its collection "
                                f"has not finished: run the same collect again)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err


def dataset_arrays(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every episode's arrays in the manifest's order, keyed by episode name, then dataset path
    (``obs/force``...), as numpy (to compare two datasets array by array)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for entry in read_manifest(folder)["episodes"]:
        with h5py.File(Path(folder) / entry["shard"], "r") as f:
            group = f[f"{DATA_GROUP}/{entry['name']}"]
            out[entry["name"]] = read_episode_arrays(group, specs_from_group(group))
    return out


def is_native_shard(path: Path) -> bool:
    """Whether an HDF5 file is an mmrep shard (it has the ``data`` group)."""
    with h5py.File(path, "r") as f:
        return DATA_GROUP in f


# -------------------------------------------------------------------------------- verify and info
def verify(path: str | Path) -> list[str]:
    """Every problem found in a dataset folder or shard: unreadable files, partial episodes, schema
    violations (keys, shapes, dtypes), NaN/inf, checksum mismatches, manifest entries that do not
    match the shards. Each names its file and episode. Empty when the dataset is sound."""
    path = Path(path)
    if not path.exists():
        return [f"{path}: does not exist"]
    shards = list_shards(path)
    if not shards:
        return [f"{path}: no {SHARD_GLOB} files"]
    problems: list[str] = []
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
                if not is_complete(group):
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
                if episode_checksum(arrays, specs) != group.attrs[CHECKSUM_ATTR]:
                    problems.append(f"{where}: checksum mismatch (content changed after writing)")
                seen[name] = (shard.name, str(group.attrs[CHECKSUM_ATTR]))
    if path.is_dir():
        try:
            manifest = read_manifest(path)
        except (FileNotFoundError, ValueError) as err:
            return problems + [str(err)]
        for e in manifest["episodes"]:
            got = seen.get(e["name"])
            if got is None:
                problems.append(f"{path / MANIFEST}: lists {e['name']} in {e['shard']}, not found intact")
            elif got != (e["shard"], e["checksum"]):
                problems.append(f"{path / MANIFEST}: {e['name']} differs from {got[0]} (shard or checksum)")
    return problems


def info(path: str | Path) -> dict[str, Any]:
    """Episodes, steps, size on disk, per-shape and per-policy counts, contact and success ratios."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset path {path} does not exist")
    shards = list_shards(path)
    shapes, policies = Counter(), Counter()
    episodes = steps = successes = contact_steps = 0
    for shard in shards:
        with h5py.File(shard, "r") as f:
            for name in episode_groups(f):
                g = f[DATA_GROUP][name]
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
    if path.is_dir() and is_dataset_folder(path):
        m = read_manifest(path)
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
