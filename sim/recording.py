"""Recording episodes into HDF5 shards (one writer per file), crash-safely.

``record_episode`` runs a policy in an env and returns the episode's arrays in the schema of
``sim.schema``; ``ShardWriter`` appends finished episodes to a shard file, each as one group whose
``checksum`` attribute is written last, followed by a flush. Opening a shard for writing removes any
group without a checksum (an episode cut short by a crash), so the file only ever holds complete
episodes once a writer has opened it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sim.policies import ScriptedPolicy
from sim.schema import (
    DATA_GROUP,
    EPISODE_PREFIX,
    SCHEMA_VERSION,
    ArraySpec,
    episode_checksum,
    episode_name,
    episode_specs,
    validate_episode,
)

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
    """The schema's arrays for this env's settings (camera, flow, substeps, action size)."""
    cfg = env.unwrapped.cfg
    return episode_specs(cfg.image_size, cfg.n_substeps, cfg.action_dim, camera=cfg.use_camera,
                         flow=cfg.compute_flow)


def record_episode(env, policy: ScriptedPolicy, seed: int, should_stop=None) -> tuple[dict, dict]:
    """Run one episode and return ``(arrays, attrs)`` in the schema's layout.

    ``should_stop()``, called after each step, aborts the episode by raising ``InterruptedError``
    (used by workers whose parent died).
    """
    cfg = env.unwrapped.cfg
    obs, info = env.reset(seed=seed)
    policy.reset(info, seed=seed)
    rows: dict[str, list] = {k: [] for k in ("rgb", "depth", "force", "proprio", "contact",
                                            "joint_pos", "joint_vel")}
    actions, rewards, dones, flows = [], [], [], []

    def add_obs(o, i):
        for key in ("force", "proprio", "contact"):
            rows[key].append(o[key])
        if cfg.use_camera:
            rows["rgb"].append(o["rgb"])
            rows["depth"].append(o["depth"].astype(np.float16))
        rows["joint_pos"].append(i["joint_pos"])
        rows["joint_vel"].append(i["joint_vel"])

    add_obs(obs, info)
    terminated = truncated = False
    while not (terminated or truncated):
        action = np.asarray(policy.act(obs, info), dtype=np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(np.clip(action, -1.0, 1.0))
        rewards.append(reward)
        dones.append(terminated)
        if cfg.compute_flow:
            flows.append(info["flow"].astype(np.float16))
        add_obs(obs, info)
        if should_stop is not None and should_stop():
            raise InterruptedError("recording stopped")
    arrays = {f"obs/{k}": np.stack(v) for k, v in rows.items() if v}
    arrays["actions"] = np.stack(actions).astype(np.float32)
    arrays["rewards"] = np.asarray(rewards, dtype=np.float32)
    arrays["dones"] = np.asarray(dones, dtype=bool)
    if cfg.compute_flow:
        arrays["flow"] = np.stack(flows)
    arrays["obs/contact"] = arrays["obs/contact"].astype(np.int8)
    attrs = {"seed": int(seed), "peg_shape": cfg.peg_shape, "policy": policy.name,
             "success": bool(terminated), "num_steps": len(actions),
             "truncation_reason": info.get("truncation_reason") or "",
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
        self.removed_partial = [name for name in data if "checksum" not in data[name].attrs]
        for name in self.removed_partial:
            del data[name]
        f.flush()

    def completed(self) -> dict[int, str]:
        """Episode index -> checksum of every complete episode in the shard."""
        data = self._file[DATA_GROUP]
        return {int(data[n].attrs["index"]): str(data[n].attrs["checksum"])
                for n in data if n.startswith(EPISODE_PREFIX)}

    def write(self, index: int, arrays: dict[str, np.ndarray], attrs: dict[str, Any],
              specs: list[ArraySpec]) -> str:
        """Write episode ``index`` and return its checksum. Raises ShardWriteError naming the file."""
        problems = validate_episode(arrays, specs, attrs["num_steps"])
        if problems:
            raise ValueError(f"episode {index} does not match the schema: {'; '.join(problems)}")
        checksum = episode_checksum(arrays, specs)
        name = episode_name(index)
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
            group.attrs["checksum"] = checksum  # last: marks the episode complete
            self._file.flush()
        except OSError as err:
            reason = "disk full" if getattr(err, "errno", None) == errno.ENOSPC else str(err)
            raise ShardWriteError(f"writing episode {name} to {self.path} failed: {reason}; the "
                                  f"episodes written before it are intact") from err
        return checksum

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:
            try:
                self._file.close()
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


def read_episode_arrays(group: h5py.Group, specs: list[ArraySpec]) -> dict[str, np.ndarray]:
    """All arrays of one episode group, as numpy (for verification and export)."""
    return {spec.path: group[spec.path][()] for spec in specs if spec.path in group}


def specs_from_group(group: h5py.Group) -> list[ArraySpec]:
    """The schema's specs matching an episode group as stored (its env config and present arrays)."""
    env = json.loads(group.attrs["env_config"])
    n = int(round(env["physics_hz"] / env["control_hz"]))
    return episode_specs(env["image_size"], n, env["action_dim"], camera="obs/rgb" in group,
                         flow="flow" in group)
