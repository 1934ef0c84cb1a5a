"""Episode sources: the native simulated shards and the paper's reference layout, behind one interface.

A source lists episodes and reads rows of their arrays under one vocabulary, so the Dataset does not
care where the data came from:

    rgb      (S, S, 3) uint8          depth   (S, S, 1) float32, metres
    force    (n, 6)    float32        flow    (S, S, 2) float32, pixels (dcol, drow), frame t -> t+1
    proprio8 (8,)      float32        x, y, z (m), yaw (rad), vx, vy, vz (m/s), yaw rate (rad/s)
    contact  (n,)      int8           action  (4,) float32 (3-D actions padded with a zero yaw)

``proprio8`` is the paper's 8-D proprioception; the reference files do not document their columns,
and mmrep uses this order for both sources (position and yaw first, so ``proprio8[t+1][:4]`` is the
next end-effector pose, as the reference code reads it).

Files are opened lazily, once per process (DataLoader workers reopen after the fork), and read one
row or one contiguous slice at a time, never with fancy indexing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from sim.schema import DATA_GROUP, EPISODE_PREFIX

REFERENCE_KEYS = {
    "action": (4,), "contact": (50,), "depth_data": (128, 128, 1), "ee_forces_continuous": (50, 6),
    "ee_ori": (4,), "ee_pos": (3,), "ee_vel": (3,), "ee_vel_ori": (3,), "ee_yaw": (4,),
    "ee_yaw_delta": (4,), "image": (128, 128, 3), "joint_pos": (7,), "joint_vel": (7,),
    "optical_flow": (128, 128, 2), "proprio": (8,),
}
"""The paper's real-robot file layout: every key has 50 rows of these shapes."""


@dataclass(frozen=True)
class Episode:
    """One episode: ``num_obs`` observation rows, ``num_obs - 1`` transitions (t, t+1)."""

    file: Path
    group: str | None  # HDF5 group of a native episode; None for a reference-layout file
    num_obs: int
    name: str


def yaw_of(quat: np.ndarray) -> np.ndarray:
    """Yaw (rad) of (x, y, z, w) quaternions (..., 4) of a peg pointing down, relative to the
    nominal flange-down pose (whose x axis points along world -x)."""
    x, y, z, w = np.moveaxis(np.asarray(quat, dtype=np.float64), -1, 0)
    r00 = 1 - 2 * (y * y + z * z)
    r10 = 2 * (x * y + z * w)
    return np.angle(np.exp(1j * (np.arctan2(r10, r00) - np.pi)))


def proprio8_from_sim(proprio13: np.ndarray) -> np.ndarray:
    """(T, 8) proprio8 from the env's (T, 13) proprio (pos, quat, lin vel, ang vel)."""
    p = np.asarray(proprio13, dtype=np.float32)
    yaw = yaw_of(p[:, 3:7]).astype(np.float32)[:, None]
    return np.concatenate([p[:, :3], yaw, p[:, 7:10], p[:, 12:13]], axis=1)


class _Handles:
    """Per-process cache of open HDF5 files (h5py handles must not cross a fork)."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._files: dict[Path, h5py.File] = {}
        self._datasets: dict[tuple[Path, str], h5py.Dataset] = {}

    def dataset(self, path: Path, name: str) -> h5py.Dataset:
        """An open dataset object, kept: h5py's path lookups cost more than a one-chunk read."""
        key = (path, name)
        d = self._datasets.get(key) if os.getpid() == self._pid else None
        if d is None:
            d = self._datasets[key] = self.get(path)[name]
        return d

    def get(self, path: Path) -> h5py.File:
        if os.getpid() != self._pid:  # forked into a DataLoader worker: the parent's handles are unusable
            self._files = {}
            self._datasets = {}
            self._pid = os.getpid()
        f = self._files.get(path)
        if f is None:
            try:
                # No chunk cache: samples read one row (one chunk) at random, so a cache would only
                # cost memory (h5py's default 1 MiB per open dataset adds up to GiBs over an epoch).
                f = h5py.File(path, "r", rdcc_nbytes=0)
            except OSError as err:
                raise OSError(f"cannot open {path}: {err}") from err
            self._files[path] = f
        return f

    def close(self) -> None:
        self._datasets = {}
        for f in self._files.values():
            f.close()
        self._files = {}

    def __getstate__(self):  # pickled into spawned workers: start with no open files
        return {"_pid": -1, "_files": {}, "_datasets": {}}

    def __setstate__(self, state):
        self.__dict__.update(state)


class SimSource:
    """Episodes of a native dataset (a folder with ``manifest.json``, or shard files).

    Args:
        path: dataset folder (uses its manifest and split) or one ``.h5`` shard.
        split: "train", "valid" or None (all episodes).
    """

    kind = "sim"

    def __init__(self, path: str | Path, split: str | None = None) -> None:
        path = Path(path)
        self.handles = _Handles()
        if path.is_dir():
            manifest_path = path / "manifest.json"
            if not manifest_path.exists():
                raise FileNotFoundError(f"{path} has no manifest.json (not a dataset folder, or its "
                                        f"collection has not finished: run the same collect again)")
            manifest = json.loads(manifest_path.read_text())
            chosen = manifest["episodes"]
            if split is not None:
                if split not in manifest["splits"]:
                    raise ValueError(f"split must be one of {sorted(manifest['splits'])}, got {split!r}")
                chosen = [e for e in chosen if e["split"] == split]
            self.episodes = [Episode(path / e["shard"], f"{DATA_GROUP}/{e['name']}", e["num_steps"] + 1,
                                     e["name"]) for e in chosen]
        else:
            with h5py.File(path, "r") as f:
                names = sorted(n for n in f[DATA_GROUP] if n.startswith(EPISODE_PREFIX)
                               and "checksum" in f[DATA_GROUP][n].attrs)
                if split is not None:
                    key = f"mask/{split}"
                    if key not in f:
                        raise ValueError(f"{path} has no {key}")
                    keep = {n.decode() for n in f[key][()]}
                    names = [n for n in names if n in keep]
                self.episodes = [Episode(path, f"{DATA_GROUP}/{n}",
                                         int(f[DATA_GROUP][n].attrs["num_steps"]) + 1, n) for n in names]

    def _get(self, ep: Episode, name: str, rows: int | slice) -> np.ndarray:
        return self.handles.dataset(ep.file, f"{ep.group}/{name}")[rows]

    def read(self, ep: Episode, key: str, rows: int | slice) -> np.ndarray:
        """Rows of one array (``key`` from the module's vocabulary)."""
        if key == "rgb":
            return self._get(ep, "obs/rgb", rows)
        if key == "depth":
            return self._get(ep, "obs/depth", rows).astype(np.float32)
        if key == "force":
            return self._get(ep, "obs/force", rows)
        if key == "contact":
            return self._get(ep, "obs/contact", rows)
        if key == "flow":
            return self._get(ep, "flow", rows).astype(np.float32)
        if key == "proprio8":
            p = self._get(ep, "obs/proprio", rows)
            return proprio8_from_sim(np.atleast_2d(p)).reshape(*np.shape(p)[:-1], 8)
        if key == "action":
            a = self._get(ep, "actions", rows)
            pad = 4 - a.shape[-1]
            return np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)]) if pad > 0 else a
        raise KeyError(f"unknown key {key!r}")


class ReferenceSource:
    """Episodes in the paper's reference layout: one HDF5 file per 50-step chunk (``REFERENCE_KEYS``).

    Args:
        files: the ``.h5`` files, or a folder searched recursively for them.
    """

    kind = "reference"

    def __init__(self, files: str | Path | list[str | Path]) -> None:
        if isinstance(files, (str, Path)) and Path(files).is_dir():
            paths = sorted(Path(files).rglob("*.h5"))
        elif isinstance(files, (str, Path)):
            paths = [Path(files)]
        else:
            paths = [Path(f) for f in files]
        if not paths:
            raise FileNotFoundError(f"no .h5 files in {files}")
        self.handles = _Handles()
        self.episodes = []
        for path in paths:
            with h5py.File(path, "r") as f:
                missing = [k for k in ("image", "depth_data", "ee_forces_continuous", "proprio", "contact",
                                       "action", "optical_flow") if k not in f]
                if missing:
                    raise ValueError(f"{path} is not in the reference layout: missing {missing}")
                self.episodes.append(Episode(path, None, int(f["image"].shape[0]), path.stem))

    def read(self, ep: Episode, key: str, rows: int | slice) -> np.ndarray:
        def get(name: str) -> np.ndarray:
            return self.handles.dataset(ep.file, name)[rows]

        if key == "rgb":
            img = get("image")
            return img if img.shape[-1] == 3 else np.moveaxis(img, -3, -1)
        if key == "depth":
            # Real depth has holes (0, NaN) and far readings: like the reference loader, keep only
            # (1e-7, 2) m and zero the rest, so a sensor artefact cannot turn training into NaN.
            d = np.nan_to_num(get("depth_data").astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
            d[(d <= 1e-7) | (d >= 2.0)] = 0.0
            return d if d.shape[-1] == 1 else d[..., None]
        if key == "force":
            return get("ee_forces_continuous").astype(np.float32)
        if key == "contact":
            return get("contact").astype(np.int8)
        if key == "flow":
            return get("optical_flow").astype(np.float32)
        if key == "proprio8":
            return get("proprio")[..., :8].astype(np.float32)
        if key == "action":
            return get("action")[..., :4].astype(np.float32)
        raise KeyError(f"unknown key {key!r}")


def open_source(path: str | Path, split: str | None = None):
    """A SimSource for a native dataset folder or shard, a ReferenceSource for reference-layout files
    (a folder of them, or one file), decided by what is there."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset path {path} does not exist")
    if (path / "manifest.json").exists():
        return SimSource(path, split)
    if path.is_file():
        with h5py.File(path, "r") as f:
            native = DATA_GROUP in f
        return SimSource(path, split) if native else ReferenceSource(path)
    return ReferenceSource(path)
