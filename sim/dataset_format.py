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
        obs/<key>     (T+1, ...)     per modality  a plug-in observation in ``EnvConfig.extra_observations``
                                               that names no recorded arrays (``recorded_extra_observations``)
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

import errno
import hashlib
import json
import os
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
# what to do about a damaged dataset (the errors of the exports say it)
REPAIR_ADVICE = ("the same collect command re-collects the episodes of a shard cut short; an episode damaged inside\n"
                 "a readable shard is not detected by it: collect again into a new folder")
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


def recorded_extra_observations(env_config) -> list[str]:
    """The plug-in observations (``EnvConfig.extra_observations``) an episode stores as ``obs/<key>``:
    those whose modality is held by no other recorded array (``Modality.dataset_arrays == (key,)``)."""
    from sim.modalities import modality  # the registry imports gymnasium; the format needs it only here

    keys = getattr(env_config, "extra_observations", None) or []
    return [k for k in keys if modality(k).dataset_arrays == (k,)]


def specs_for_env_config(env_config) -> list[ArraySpec]:
    """The arrays recorded from an env with this ``EnvConfig`` (camera, flow, substeps, action size),
    then one ``obs/<key>`` per recorded plug-in observation (after the rest: a dataset without them
    keeps its checksums)."""
    from sim.modalities import modality

    s, n = env_config.image_size, env_config.n_substeps
    specs = episode_specs(s, n, env_config.action_dim, camera=env_config.use_camera,
                          flow=env_config.compute_flow)
    for key in recorded_extra_observations(env_config):
        m = modality(key)
        row_shape = tuple(n if d is None else d for d in m.shape(s, n))
        specs.append(ArraySpec(f"obs/{key}", row_shape, m.dtype or "float32", True))
    return specs


def specs_from_group(group: h5py.Group) -> list[ArraySpec]:
    """The specs matching an episode group as stored (its env config and the arrays present; a
    plug-in observation's row shape and dtype as stored, so reading needs no plug-in imported)."""
    env = json.loads(group.attrs["env_config"])
    n = int(round(env["physics_hz"] / env["control_hz"]))
    specs = episode_specs(env["image_size"], n, env["action_dim"], camera="obs/rgb" in group,
                          flow="flow" in group)
    for key in env.get("extra_observations", []):
        path = f"obs/{key}"
        if path in group:
            stored = group[path]
            specs.append(ArraySpec(path, tuple(stored.shape[1:]), stored.dtype.name, True))
    return specs


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


def episode_groups(f: h5py.File, complete: bool | None = True, probe: int = 0) -> list[str]:
    """Sorted names of the episode groups of an open shard: complete ones (default), partial ones
    (``complete=False``) or all (``None``). When the ``data`` group cannot be listed (its header was
    cut off by a full disk) and ``probe`` > 0, the names ``ep_000000`` ... of the first ``probe``
    episodes are looked up one by one instead (a lookup by name still works then)."""
    data = f.get(DATA_GROUP)
    if data is None:
        return []
    try:
        names = sorted(n for n in data if n.startswith(EPISODE_PREFIX))
    except READ_ERRORS:
        if not probe:
            raise
        names = [n for n in map(episode_name, range(probe)) if _exists(data, n)]
    if complete is None:
        return names
    return [n for n in names if is_complete(data[n]) == complete]


def _exists(group: h5py.Group, name: str) -> bool:
    try:
        return name in group
    except READ_ERRORS:
        return True  # there, but damaged: the caller reads it and reports it


def probe_limit(folder: Path) -> int:
    """How many episode names to look up in a shard whose episode list cannot be read: the planned
    episodes of the folder's collection (``collect_config.json``) or its manifest, at least 10000."""
    n = 10_000
    for name, key in ((COLLECT_CONFIG, "episodes"), (MANIFEST, "episodes")):
        try:
            value = json.loads((Path(folder) / name).read_text())[key]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        n = max(n, value if isinstance(value, int) else len(value))
    return n


def episode_record(group: h5py.Group, shard: str) -> dict[str, Any]:
    """The manifest entry of a complete episode group (without its split)."""
    a = group.attrs
    return {"name": group.name.rsplit("/", 1)[-1], "shard": shard, "checksum": str(a[CHECKSUM_ATTR]),
            "num_steps": int(a["num_steps"]), "seed": int(a["seed"]), "peg_shape": str(a["peg_shape"]),
            "policy": str(a["policy"]), "success": bool(a["success"])}


READ_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError, AttributeError)
"""What h5py raises for a damaged file or object: a truncated file, a header that points past the end
of the file (``KeyError: ... addr overflow``), a bad heap, a bad attribute."""


class UnreadableFileError(OSError):
    """A file mmrep reads cannot be read; the message names it and says what to do."""


def open_shard(path: Path, mode: str = "r", **kwargs) -> h5py.File:
    """``h5py.File(path, mode)`` with an ``UnreadableFileError`` that names the file and says what to do
    when it cannot be opened (truncated, corrupted, not HDF5)."""
    try:
        return h5py.File(path, mode, **kwargs)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except READ_ERRORS as err:
        if _is_lock_error(err):
            raise
        raise UnreadableFileError(f"{path} cannot be opened as HDF5 ({_first_line(err)}): it is truncated or "
                                  f"corrupted; run the collection again into its folder (it moves a damaged "
                                  f"shard aside and re-collects its episodes), re-export or re-download it"
                                  ) from None


def _is_lock_error(err: BaseException) -> bool:
    """Whether h5py refused a file because another process holds its lock (not "sblock->..." of a
    truncated file's message)."""
    return "unable to lock" in str(err).lower()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def read_shard_episodes(f: h5py.File, shard_label: str,
                        probe: int = 0) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """The complete episodes of an open shard (index -> ``episode_record``) and its damaged episode
    groups (``"ep_000012 (KeyError: ...)"``): complete episodes whose header or attributes cannot be
    read, whatever h5py raises. Partial episodes (no checksum) are neither."""
    found: dict[int, dict[str, Any]] = {}
    damaged: list[str] = []
    data = f.get(DATA_GROUP)
    try:
        len(data) if data is not None else 0
    except READ_ERRORS as err:  # its episode list: looked up by name below
        damaged.append(f"{DATA_GROUP} ({_first_line(err)})")
    for name in episode_groups(f, complete=None, probe=probe):
        try:
            group = f[DATA_GROUP][name]
            if not is_complete(group):
                continue
            found[int(group.attrs["index"])] = episode_record(group, shard_label)
        except READ_ERRORS as err:
            damaged.append(f"{name} ({_first_line(err)})")
    return found, damaged


def salvage_shard(shard: Path, probe: int = 0) -> tuple[Path, int]:
    """Copy the readable complete episodes of a damaged shard into a fresh file that replaces it; the
    damaged file is moved aside to ``*.corrupt-<time>``. Returns (that file, episodes kept)."""
    fresh = shard.with_suffix(".h5.salvage")
    free, size = shutil.disk_usage(shard.parent).free, shard.stat().st_size
    if free < size + 2**20:  # the copy is at most the shard's size: never start what cannot finish
        raise OSError(errno.ENOSPC, f"disk full: {free / 2**20:.1f} MiB free, the repair may need "
                                    f"{(size + 2**20) / 2**20:.1f} MiB")
    kept = 0
    with h5py.File(shard, "r") as src, h5py.File(fresh, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        data = dst.require_group(DATA_GROUP)
        for name in episode_groups(src, complete=None, probe=probe):
            try:
                if is_complete(src[DATA_GROUP][name]):
                    src.copy(src[DATA_GROUP][name], data, name=name)
                    kept += 1
            except READ_ERRORS:
                if name in data:
                    del data[name]
    aside = shard.with_suffix(f".h5.corrupt-{int(time.time())}")
    shutil.move(shard, aside)
    os.replace(fresh, shard)
    return aside, kept


def scan_shards(out: Path, quarantine: bool = False, wait: float = 10.0,
                locking: bool = True) -> dict[int, dict[str, Any]]:
    """Complete episodes in the shards of ``out``: index -> manifest entry (``episode_record``).

    A shard still held by a writer (e.g. a worker orphaned by a killed run, which stops within a
    control step) is waited for up to ``wait`` seconds. With ``quarantine`` (the collector, which owns
    the folder), a damaged shard is repaired, whatever h5py raises: one with damaged episodes (a disk
    that filled up in the middle of a write) is rewritten with its readable complete episodes and the
    damaged file moved aside to ``*.corrupt-<time>``; one that cannot be opened at all is moved aside
    whole; a warning says so, and the episodes lost are collected again (they are deterministic).
    Without it, a shard that cannot be opened raises ``UnreadableFileError`` naming it and damaged
    episodes are left out. ``locking=False`` peeks at shards that are being written (progress
    monitoring; what it sees may be a moment old).
    """
    found: dict[int, dict[str, Any]] = {}
    probe = probe_limit(out) if Path(out).is_dir() else 10_000
    for shard in list_shards(Path(out)):
        deadline = time.monotonic() + wait
        while True:
            try:
                with h5py.File(shard, "r", locking=locking) as f:
                    episodes, damaged = read_shard_episodes(f, shard.name, probe)
            except FileNotFoundError:
                raise
            except READ_ERRORS as err:
                if _is_lock_error(err) and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                if _is_lock_error(err):
                    raise RuntimeError(f"shard {shard} is being written by another process") from err
                if not quarantine:
                    raise UnreadableFileError(f"shard {shard} cannot be read ({_first_line(err)}); run the "
                                              f"same collection again to repair the folder") from None
                aside = shard.with_suffix(f".h5.corrupt-{int(time.time())}")
                shutil.move(shard, aside)
                warnings.warn(f"shard {shard} could not be read ({_first_line(err)}); moved to {aside.name}, "
                              f"its episodes will be collected again", stacklevel=2)
                break
            if damaged and quarantine:
                try:
                    aside, kept = salvage_shard(shard, probe)
                except READ_ERRORS as err:  # e.g. the disk is still full: change nothing
                    shard.with_suffix(".h5.salvage").unlink(missing_ok=True)
                    raise OSError(f"shard {shard} has damaged episodes and could not be repaired "
                                  f"({disk_error_reason(err)}); nothing was changed") from None
                warnings.warn(f"shard {shard}: damaged episode(s) {', '.join(damaged)}; kept its "
                              f"{kept} readable complete episodes, the damaged file moved to "
                              f"{aside.name}; the rest will be collected again", stacklevel=2)
                continue  # read the repaired shard
            found.update(episodes)
            break
    return found


def disk_error_reason(err: BaseException) -> str:
    """"disk full" for ENOSPC (also h5py's, which says so only in its text), else the error's first line."""
    if getattr(err, "errno", None) == errno.ENOSPC or "No space left" in str(err):
        return "disk full"
    return _first_line(err)


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


SPLIT_RULE = "index-golden-1"
_GOLDEN = (5 ** 0.5 - 1) / 2


def split_of_index(index: int, seed: int, valid_fraction: float) -> str:
    """"train" or "valid" of episode ``index``: a function of (index, seed, fraction) alone, so that
    extending a dataset never moves an episode. Episode i is valid when the fractional part of
    ``0.5 + (seed + i) x golden ratio`` lies under ``valid_fraction``: a low-discrepancy sequence, so any
    first n episodes hold about ``valid_fraction x n`` valid ones (within two, measured up to 200 over
    seeds 0-4), spread over the peg shapes (no period)."""
    return "valid" if (0.5 + (seed + index) * _GOLDEN) % 1.0 < valid_fraction else "train"


def recorded_splits(out: Path) -> dict[int, str]:
    """{episode index: split} as the folder's manifest recorded them ({} without a readable manifest)."""
    try:
        manifest = read_manifest(out)
    except (FileNotFoundError, ValueError):
        return {}
    return {int(e["index"]): e["split"] for e in manifest.get("episodes", []) if e.get("split") in SPLITS}


def write_manifest(out: Path, config: dict[str, Any], planned: int, valid_fraction: float,
                   seed: int) -> dict[str, Any]:
    """Index the shards' complete episodes, write ``mask/*`` into each shard and ``manifest.json``
    atomically; return the manifest. An episode the manifest already lists keeps its split (also one
    written by the earlier permutation rule); the others get ``split_of_index``."""
    out = Path(out)
    found = scan_shards(out)
    kept = recorded_splits(out)
    episodes = [{"index": i, **found[i], "split": kept.get(i) or split_of_index(i, seed, valid_fraction)}
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
        "split_rule": SPLIT_RULE,
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
        with open_shard(Path(folder) / entry["shard"]) as f:
            group = f[f"{DATA_GROUP}/{entry['name']}"]
            out[entry["name"]] = read_episode_arrays(group, specs_from_group(group))
    return out


def is_native_shard(path: Path) -> bool:
    """Whether an HDF5 file is an mmrep shard (it has the ``data`` group)."""
    with open_shard(path) as f:
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
    probe = probe_limit(path if path.is_dir() else path.parent)
    for shard in shards:
        try:
            f = h5py.File(shard, "r")
        except READ_ERRORS as err:
            problems.append(f"{shard}: cannot be opened ({_first_line(err)}); truncated or corrupted")
            continue
        with f:
            if DATA_GROUP not in f:
                problems.append(f"{shard}: no '{DATA_GROUP}' group (not an mmrep shard)")
                continue
            try:
                names = sorted(f[DATA_GROUP])
            except READ_ERRORS as err:
                problems.append(f"{shard}:{DATA_GROUP}: its episode list cannot be read ({_first_line(err)}; "
                                f"a full disk or a crash cut the file short); episodes looked up by name")
                names = episode_groups(f, complete=None, probe=probe)
            for name in names:
                where = f"{shard}:{DATA_GROUP}/{name}"
                if not name.startswith(EPISODE_PREFIX):
                    problems.append(f"{where}: unexpected entry")
                    continue
                try:
                    group = f[DATA_GROUP][name]
                    if not is_complete(group):
                        problems.append(f"{where}: partial episode (no checksum; a crash cut it short)")
                        continue
                    specs = specs_from_group(group)
                    arrays = read_episode_arrays(group, specs)
                    num_steps = int(group.attrs["num_steps"])
                    checksum = str(group.attrs[CHECKSUM_ATTR])
                except READ_ERRORS as err:
                    problems.append(f"{where}: unreadable ({_first_line(err)})")
                    continue
                problems += [f"{where}: {p}" for p in validate_episode(arrays, specs, num_steps)]
                try:
                    changed = episode_checksum(arrays, specs) != checksum
                except KeyError as err:  # an array the episode should hold is gone
                    problems.append(f"{where}: {err.args[0]} missing (no checksum to compare)")
                    changed = False
                if changed:
                    problems.append(f"{where}: checksum mismatch (content changed after writing)")
                seen[name] = (shard.name, checksum)
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
    """Episodes, steps, size on disk, per-shape and per-policy counts, contact and success ratios.
    ``warnings`` lists what does not add up (a shard the manifest lists that is missing, a damaged
    shard or episode, episodes the manifest lists that are not found intact): empty for a sound set."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset path {path} does not exist")
    shards = list_shards(path)
    probe = probe_limit(path if path.is_dir() else path.parent)
    shapes, policies = Counter(), Counter()
    episodes = steps = successes = contact_steps = 0
    problems: list[str] = []
    names: set[str] = set()
    for shard in shards:
        try:
            f = open_shard(shard)
        except UnreadableFileError as err:
            problems.append(str(err))
            continue
        with f:
            found, damaged = read_shard_episodes(f, shard.name, probe)
            problems += [f"{shard}: damaged {d}" for d in damaged]
            for record in found.values():
                try:
                    g = f[DATA_GROUP][record["name"]]
                    contact = int(g["obs/contact"][1:].any(axis=1).sum())
                except READ_ERRORS as err:
                    problems.append(f"{shard}: damaged {record['name']} ({_first_line(err)})")
                    continue
                names.add(f"{shard.name}/{record['name']}")
                episodes += 1
                steps += record["num_steps"]
                successes += record["success"]
                shapes[record["peg_shape"]] += 1
                policies[record["policy"]] += 1
                contact_steps += contact
    size = sum(p.stat().st_size for p in shards)
    out: dict[str, Any] = {
        "path": str(path), "shards": len(shards), "episodes": episodes, "steps": steps,
        "size_bytes": size, "size_per_step_bytes": size / max(steps, 1),
        "per_shape": dict(sorted(shapes.items())), "per_policy": dict(sorted(policies.items())),
        "contact_ratio": contact_steps / max(steps, 1), "success_ratio": successes / max(episodes, 1),
    }
    if path.is_dir() and is_dataset_folder(path):
        m = read_manifest(path)
        listed = [e for e in m["episodes"] if e.get("split") in SPLITS]
        out["splits"] = {s: sum(e["split"] == s for e in listed if f"{e['shard']}/{e['name']}" in names)
                         for s in SPLITS}
        out["complete"] = m["complete"]
        for shard in sorted({e["shard"] for e in m["episodes"]}):
            if not (path / shard).exists():
                n = sum(e["shard"] == shard for e in m["episodes"])
                problems.append(f"{path / shard}: missing ({n} episodes of the manifest were in it)")
        lost = [e["name"] for e in m["episodes"] if f"{e['shard']}/{e['name']}" not in names
                and (path / e["shard"]).exists()]
        if lost:
            problems.append(f"{path / MANIFEST}: {len(lost)} listed episode(s) not found intact "
                            f"(first {lost[0]}); run `mmrep data verify {path}`")
    elif path.is_dir() and episodes and not (path / MANIFEST).exists():
        problems.append(f"{path} has no {MANIFEST}: its collection has not finished (run the same collect "
                        f"again to finish it)")
    out["warnings"] = problems
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
    lines += [f"WARNING      {w}" for w in d.get("warnings", [])]
    return "\n".join(lines)
