"""Recording episodes into HDF5 shards (one writer per file), crash-safely.

``record_episode`` runs a policy in an env (the one rollout loop, ``sim.experts.run_episode``) and
returns the episode's arrays in the layout of ``sim.dataset_format``; ``ShardWriter`` appends
finished episodes to a shard file, each as one group marked complete last, followed by a flush.
Opening a shard for writing removes any partial group (an episode cut short by a crash), so the
file only ever holds complete episodes once a writer has opened it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sim.dataset_format import (
    CHECKSUM_ATTR,
    DATA_GROUP,
    SCHEMA_VERSION,
    ArraySpec,
    disk_error_reason,
    episode_checksum,
    episode_groups,
    episode_name,
    mark_complete,
    recorded_extra_observations,
    specs_for_env_config,
    validate_episode,
)
from sim.experts import ScriptedExpert, StepRecord, run_episode

COMPRESSIONS = ("lzf", "gzip", "none")


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the data (for the file's ``versions`` attribute)."""
    out = {}
    for name in ("mmrep", "pybullet", "numpy", "gymnasium", "h5py"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def specs_for_env(env) -> list[ArraySpec]:
    """The format's arrays for this env's settings (camera, flow, substeps, action size)."""
    return specs_for_env_config(env.unwrapped.cfg)


def record_episode(env, policy: ScriptedExpert, seed: int, should_stop=None) -> tuple[dict, dict]:
    """Run one episode (``sim.experts.run_episode``) and return ``(arrays, attrs)`` in the layout of
    ``sim.dataset_format``. ``should_stop()`` aborts it with ``InterruptedError``."""
    cfg = env.unwrapped.cfg
    extra = recorded_extra_observations(cfg)  # plug-in observations, each as obs/<key>
    obs_keys = ["force", "proprio", "contact"] + (["rgb", "depth"] if cfg.use_camera else []) + extra
    rows: dict[str, list] = {k: [] for k in (*obs_keys, "joint_pos", "joint_vel")}
    actions, rewards, dones, flows = [], [], [], []

    def add_obs(obs: dict, info: dict) -> None:
        for key in obs_keys:
            rows[key].append(obs[key])
        rows["joint_pos"].append(info["joint_pos"])
        rows["joint_vel"].append(info["joint_vel"])

    def add_step(step: StepRecord) -> None:
        actions.append(np.clip(step.action, -1.0, 1.0))
        rewards.append(step.reward)
        dones.append(step.terminated)
        if cfg.compute_flow:
            flows.append(step.info["flow"].astype(np.float16))
        add_obs(step.obs, step.info)

    result = run_episode(env, policy, seed, on_reset=add_obs, on_step=add_step, should_stop=should_stop)
    arrays = {f"obs/{k}": np.stack(v) for k, v in rows.items()}
    if cfg.use_camera:
        arrays["obs/depth"] = arrays["obs/depth"].astype(np.float16)
    arrays["obs/contact"] = arrays["obs/contact"].astype(np.int8)
    for spec in specs_for_env_config(cfg)[-len(extra):] if extra else ():  # the plug-ins' specs come last
        arrays[spec.path] = arrays[spec.path].astype(spec.dtype)
    arrays["actions"] = np.stack(actions).astype(np.float32)
    arrays["rewards"] = np.asarray(rewards, dtype=np.float32)
    arrays["dones"] = np.asarray(dones, dtype=bool)
    if cfg.compute_flow:
        arrays["flow"] = np.stack(flows)
    attrs = {"seed": int(seed), "peg_shape": cfg.peg_shape, "policy": policy.name,
             "success": result["success"], "num_steps": result["steps"],
             "truncation_reason": result["truncation_reason"] or "",
             "env_config": json.dumps(cfg.to_dict()), "policy_config": json.dumps(policy.config())}
    return arrays, attrs


class ShardWriteError(RuntimeError):
    """Writing a shard failed (disk full, permissions, ...); the message names the file."""


class ShardWriter:
    """Appends complete episodes to one HDF5 shard, the only writer of that file.

    Args:
        path: the shard file; created if missing, reopened (and cleaned of partial episodes) if not.
        compression: "lzf" (default), "gzip" (level 4) or "none"; images are chunked a frame a chunk.
        lock_timeout: s, how long to wait for another writer of the same shard to let go.
    """

    def __init__(self, path: Path, compression: str = "lzf", lock_timeout: float = 10.0) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self.path = Path(path)
        self.compression = compression
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A lock file makes a second writer fail loudly instead of corrupting the shard.
            self._lock = open(self.path.with_suffix(self.path.suffix + ".lock"), "w")
        except OSError as err:
            raise ShardWriteError(f"cannot create shard {self.path}: {err.strerror}") from err
        # A writer orphaned by a killed parent stops within a control step; wait that long for it.
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if time.monotonic() > deadline:
                    self._lock.close()
                    raise ShardWriteError(f"shard {self.path} is being written by another process"
                                          ) from err
                time.sleep(0.05)
        try:
            self._file = h5py.File(self.path, "a")
        except OSError as err:
            self._release()
            raise ShardWriteError(f"cannot open shard {self.path} for writing: {err}") from err
        f = self._file
        f.attrs.setdefault("schema_version", SCHEMA_VERSION)
        f.attrs["versions"] = json.dumps(package_versions())
        f.attrs.setdefault("created_by", "mmrep collect")
        data = f.require_group(DATA_GROUP)
        self.removed_partial = episode_groups(f, complete=False)
        for name in self.removed_partial:
            del data[name]
        f.flush()

    def completed(self) -> dict[int, str]:
        """Episode index -> checksum of every complete episode in the shard."""
        data = self._file[DATA_GROUP]
        return {int(data[n].attrs["index"]): str(data[n].attrs[CHECKSUM_ATTR]) for n in episode_groups(self._file)}

    def write(self, index: int, arrays: dict[str, np.ndarray], attrs: dict[str, Any],
              specs: list[ArraySpec]) -> str:
        """Write episode ``index`` and return its checksum. Raises ShardWriteError naming the file."""
        problems = validate_episode(arrays, specs, attrs["num_steps"])
        if problems:
            raise ValueError(f"episode {index} does not match the schema: {'; '.join(problems)}")
        checksum = episode_checksum(arrays, specs)
        name = episode_name(index)
        self._check_free_space(name, sum(a.nbytes for a in arrays.values()))
        data = self._file[DATA_GROUP]
        try:
            if name in data:  # a complete copy from an earlier run: same seed, same content
                del data[name]
            group = data.create_group(name)
            for spec in specs:
                a = arrays[spec.path]
                kwargs: dict[str, Any] = {}
                if self.compression != "none":
                    kwargs["compression"] = self.compression
                    if self.compression == "gzip":
                        kwargs["compression_opts"] = 4
                if spec.row_chunks:
                    kwargs["chunks"] = (1, *spec.row_shape)
                elif a.ndim and self.compression != "none":
                    kwargs["chunks"] = a.shape  # small arrays: one chunk, read in one go
                group.create_dataset(spec.path, data=a, **kwargs)
            for key, value in attrs.items():
                group.attrs[key] = value
            group.attrs["index"] = int(index)
            self._file.flush()  # the arrays on disk first: a checksum never marks unwritten data
            mark_complete(group, checksum)  # last: marks the episode complete
            self._file.flush()
        except (OSError, RuntimeError, KeyError, ValueError) as err:
            self._broken = True  # HDF5's state after a failed write: closing it may write more or crash
            try:  # never let a later flush mark this episode complete
                if name in data and CHECKSUM_ATTR in data[name].attrs:
                    del data[name].attrs[CHECKSUM_ATTR]
            except (OSError, RuntimeError, KeyError, ValueError):
                pass
            reason = disk_error_reason(err)
            raise ShardWriteError(f"{reason}: writing episode {name} to {self.path} failed; the episodes "
                                  f"written before it are intact. Free space (or move the folder "
                                  f"{self.path.parent} to a larger disk) and run the same command to "
                                  f"resume") from None
        return checksum

    check_free_space = True
    """Refuse an episode the disk may not hold before HDF5 writes any of it (HDF5 left half a write
    behind is a damaged file that only a repair reads); off only to test that repair."""

    def _check_free_space(self, name: str, raw_bytes: int) -> None:
        """ShardWriteError when the disk has less room than the episode's uncompressed arrays plus
        1 MiB of HDF5 metadata (compression only shrinks them)."""
        if not self.check_free_space:
            return
        free = shutil.disk_usage(self.path.parent).free
        needed = raw_bytes + 2**20
        if free < needed:
            raise ShardWriteError(f"disk full: {free / 2**20:.1f} MiB free in {self.path.parent}, episode {name} "
                                  f"may need {needed / 2**20:.1f} MiB; nothing of it was written and the "
                                  f"episodes before it are intact. Free space (or move the folder to a larger "
                                  f"disk) and run the same command to resume")

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:
            try:
                self._file.close()
            except (OSError, RuntimeError, ValueError):
                if not getattr(self, "_broken", False):  # after a failed write the error is already raised
                    raise
            finally:
                self._file = None
                self._release()

    def _release(self) -> None:
        if getattr(self, "_lock", None) is not None:
            try:
                os.remove(self._lock.name)
            except OSError:
                pass
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
