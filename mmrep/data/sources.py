"""Episode sources: the native simulated shards and the paper's reference layout, behind one interface.

A source lists episodes and reads rows of their arrays under one vocabulary (the views of
``sim.observation``), so the Dataset does not care where the data came from:

    rgb      (S, S, 3) uint8          depth   (S, S, 1) float32, metres
    force    (n, 6)    float32        flow    (S, S, 2) float32, pixels (dcol, drow), frame t -> t+1
    proprio8 (8,)      float32        PROPRIO8: x, y, z (m), yaw (rad), vx, vy, vz (m/s), yaw rate (rad/s)
    contact  (n,)      int8           actions (4,) float32 ACTION4 (3-D actions padded with a zero yaw)

The reference files do not document their proprioception columns; mmrep reads their first 8 as
PROPRIO8. Files are opened lazily, once per process (DataLoader workers reopen after the fork), and
read one row or one contiguous slice at a time, never with fancy indexing. A failed read raises
``DataReadError`` naming the file, the episode and the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from sim.dataset_format import (
    DATA_GROUP,
    MANIFEST,
    UnreadableFileError,
    episode_groups,
    open_shard,
    read_manifest,
    read_mask,
)
from sim.modalities import MODALITY_REGISTRY
from sim.observation import action4_from_action, proprio8_from_proprio13
from sim.reference_layout import REQUIRED_REFERENCE_KEYS

KEYS = ("rgb", "depth", "force", "flow", "proprio8", "contact", "actions")


class DataReadError(OSError):
    """Reading an array failed (a corrupted chunk, a missing key); the message names file, episode, key."""


@dataclass(frozen=True)
class Episode:
    """One episode: ``num_obs`` observation rows, ``num_obs - 1`` transitions (t, t+1)."""

    file: Path
    group: str | None  # HDF5 group of a native episode; None for a reference-layout file
    num_obs: int
    name: str


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
                f = open_shard(path, "r", rdcc_nbytes=0)
            except UnreadableFileError:
                raise
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


class _Source:
    """Shared reading: ``read`` names the file, episode and key of any failure."""

    handles: _Handles
    kind = "source"

    def _raw(self, ep: Episode, key: str, rows: int | slice) -> np.ndarray:
        raise NotImplementedError

    def read(self, ep: Episode, key: str, rows: int | slice) -> np.ndarray:
        """Rows of one array (``key`` from the module's vocabulary)."""
        if key not in KEYS and not (key in MODALITY_REGISTRY and MODALITY_REGISTRY[key].dataset_arrays):
            raise KeyError(f"unknown key {key!r}; one of {KEYS} or a plug-in modality with recorded arrays "
                           f"(`recorded`, or `observe` and collected with env.extra_observations=[{key}])")
        try:
            return self._raw(ep, key, rows)
        except (OSError, KeyError, RuntimeError, ValueError) as err:  # ObservationShapeError: a wrong width
            where = f"{ep.file}" + (f":{ep.group}" if ep.group else "")
            raise DataReadError(f"cannot read {key!r} rows {_rows(rows)} of {where}: {err}") from err


def _rows(rows: int | slice) -> str:
    if isinstance(rows, slice):
        return "all" if rows == slice(None) else f"{rows.start}:{rows.stop}"
    return str(rows)


class SimSource(_Source):
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
            manifest = read_manifest(path)
            chosen = manifest["episodes"]
            if split is not None:
                if split not in manifest["splits"]:
                    raise ValueError(f"split must be one of {sorted(manifest['splits'])}, got {split!r}")
                chosen = [e for e in chosen if e["split"] == split]
            self.episodes = [Episode(path / e["shard"], f"{DATA_GROUP}/{e['name']}", e["num_steps"] + 1,
                                     e["name"]) for e in chosen]
        else:
            with open_shard(path) as f:
                names = episode_groups(f)
                if split is not None:
                    keep = read_mask(f, split, str(path))
                    names = [n for n in names if n in keep]
                self.episodes = [Episode(path, f"{DATA_GROUP}/{n}",
                                         int(f[DATA_GROUP][n].attrs["num_steps"]) + 1, n) for n in names]

    def _get(self, ep: Episode, name: str, rows: int | slice) -> np.ndarray:
        return self.handles.dataset(ep.file, f"{ep.group}/{name}")[rows]

    def _raw(self, ep: Episode, key: str, rows: int | slice) -> np.ndarray:
        if key == "proprio8":
            return proprio8_from_proprio13(self._get(ep, "obs/proprio", rows))
        if key == "actions":
            return action4_from_action(self._get(ep, "actions", rows))
        if key == "flow":
            return self._get(ep, "flow", rows).astype(np.float32)
        if key == "depth":
            return self._get(ep, "obs/depth", rows).astype(np.float32)
        if key not in KEYS:  # a plug-in modality: its recorded arrays side by side
            parts = [self._get(ep, f"obs/{name}", rows) for name in MODALITY_REGISTRY[key].dataset_arrays]
            return np.concatenate(parts, axis=-1)
        return self._get(ep, f"obs/{key}", rows)


class ReferenceSource(_Source):
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
            with open_shard(path) as f:
                if DATA_GROUP in f:  # an mmrep shard, read as the reference layout: its manifest is missing
                    raise FileNotFoundError(
                        f"{path} is an mmrep shard but {path.parent} has no {MANIFEST}: its collection has not "
                        f"finished or the manifest was removed; run the same `mmrep collect` again (it rebuilds "
                        f"the manifest), or give the shard file itself")
                missing = [k for k in REQUIRED_REFERENCE_KEYS if k not in f]
                if missing:
                    raise ValueError(f"{path} is not in the reference layout: missing {missing}")
                self.episodes.append(Episode(path, None, int(f["image"].shape[0]), path.stem))

    def _raw(self, ep: Episode, key: str, rows: int | slice) -> np.ndarray:
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
        return get("action")[..., :4].astype(np.float32)  # "actions"
