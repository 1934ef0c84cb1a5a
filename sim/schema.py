"""The HDF5 episode schema, defined once: the recorder (``sim.recording``) writes it, the readers in
``mmrep.data`` read it, and ``mmrep data verify`` checks files against it.

Layout of one shard file (one file per writer process, robomimic-like)::

    /data/ep_NNNNNN/                       one group per episode; attrs (JSON strings) below
        obs/rgb       (T+1, S, S, 3) uint8     camera, HWC
        obs/depth     (T+1, S, S, 1) float16   metres along the optical axis
        obs/force     (T+1, n, 6)    float32   F/T per physics substep (N, N m), sensor frame, tared; a row a chunk
        obs/proprio   (T+1, 13)      float32   tip pos (m), quaternion xyzw, lin vel (m/s), ang vel (rad/s)
        obs/contact   (T+1, n)       int8      peg-block contact per substep
        obs/joint_pos (T+1, 7)       float32   rad
        obs/joint_vel (T+1, 7)       float32   rad/s
        actions       (T, A)         float32   in [-1, 1]
        rewards       (T,)           float32
        dones         (T,)           bool      terminated (success) at that step
        flow          (T, S, S, 2)   float16   exact optical flow from frame t to t+1, pixels (dcol, drow)

Observations are stored at every time step 0..T (T+1 rows, the last is the final state), so a
training sample (t, t+1) reads row t and row t+1 of the same arrays; next-step contact and next
end-effector pose are rows t+1 of ``obs/contact`` and ``obs/proprio``.

Episode attributes: ``index`` (int), ``seed`` (int), ``peg_shape``, ``policy``, ``success`` (bool),
``num_steps`` (int), ``checksum`` (sha256 hex of the arrays, see ``episode_checksum``), ``env_config``
and ``policy_config`` (JSON). File attributes: ``schema_version``, ``versions`` (JSON: package
versions), ``created_by``. A group is complete only once its ``checksum`` attribute exists: the
writer sets it last and flushes, so a crash mid-episode leaves a group the reader and the resumer
recognise as partial.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 1
EPISODE_PREFIX = "ep_"
DATA_GROUP = "data"


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


def episode_name(index: int) -> str:
    """Group name of episode ``index`` (``ep_000042``)."""
    return f"{EPISODE_PREFIX}{index:06d}"


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
