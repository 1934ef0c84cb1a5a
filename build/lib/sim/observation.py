"""Views of an observation and the named conversions between them, defined once (numpy, no torch).

The env, the HDF5 files, the readers and the deployed encoder all meet here:

    PROPRIO13  (13,) float32, the env's and the HDF5 files' ``proprio``: peg-tip position (m, world),
               orientation quaternion (x, y, z, w), linear velocity (m/s), angular velocity (rad/s).
    PROPRIO8   (8,) float32, the model's proprioception (the paper's 8-D vector): x, y, z (m),
               peg yaw (rad), vx, vy, vz (m/s), yaw rate (rad/s). Position and yaw come first, so
               ``proprio8[t+1][:4]`` is the next end-effector pose, as the reference code reads it.
    ACTION4    (4,) float32, the model's action: (dx, dy, dz, dyaw) in [-1, 1]; a 3-D env action is
               padded with a zero yaw.

Peg yaw: the peg points straight down when its flange frame is turned by pi about x and by
``pi + yaw`` about z (pi is the iiwa's natural flange-down pose). ``tool_down_quat(yaw)`` builds
that orientation (the robot's target), ``peg_yaw(quat)`` reads the yaw back; the offset of pi lives
only in these two functions.

Naming: ``actions`` (plural) is an episode's array of rows (the HDF5 dataset ``actions``, as in
robomimic); ``action`` (singular) is one row, e.g. one training sample's action.
"""

from __future__ import annotations

import numpy as np

PROPRIO13_DIM = 13
PROPRIO8_DIM = 8
ACTION4_DIM = 4
PROPRIO13_FIELDS = ("x", "y", "z", "qx", "qy", "qz", "qw", "vx", "vy", "vz", "wx", "wy", "wz")
PROPRIO8_FIELDS = ("x", "y", "z", "yaw", "vx", "vy", "vz", "yaw_rate")

_BASE_YAW = np.pi  # the iiwa's flange-down pose is turned by pi about world z


class ObservationShapeError(ValueError):
    """An array does not have the shape its key promises; the message names the key."""


def check_shape(key: str, array, expected: tuple[int, ...], batched: bool | None = None) -> bool:
    """Check that ``array`` is ``expected`` or a batch of it ``(B, *expected)``; return whether it is
    batched. Raises ``ObservationShapeError`` naming ``key``, the expected and the actual shape."""
    shape = tuple(np.shape(array))
    if shape == tuple(expected) and batched is not True:
        return False
    if len(shape) == len(expected) + 1 and shape[1:] == tuple(expected) and batched is not False:
        return True
    want = f"{tuple(expected)}" if batched is False else f"{tuple(expected)} or (B, *{tuple(expected)})"
    raise ObservationShapeError(f"{key!r} must be {want}, got {shape}")


def tool_down_quat(yaw: float = 0.0) -> np.ndarray:
    """(4,) (x, y, z, w) orientation of a peg pointing straight down, turned by ``yaw`` (rad) about
    world z (yaw 0 matches a hole whose box has yaw 0)."""
    # Roll pi about x, then (_BASE_YAW + yaw) about z, written as PyBullet's getQuaternionFromEuler
    # computes it (the same floating-point terms, so the controller's target is bit-identical).
    half = 0.5 * (_BASE_YAW + yaw)
    cr = np.cos(0.5 * np.pi)  # 6e-17, not 0: kept for bit-identity
    return np.array([np.cos(half), np.sin(half), cr * np.sin(half), cr * np.cos(half)])


def peg_yaw(quat: np.ndarray) -> np.ndarray:
    """Yaw (rad, in (-pi, pi]) of (..., 4) (x, y, z, w) quaternions of a peg pointing down: the inverse
    of ``tool_down_quat``."""
    x, y, z, w = np.moveaxis(np.asarray(quat, dtype=np.float64), -1, 0)
    r00 = 1 - 2 * (y * y + z * z)
    r10 = 2 * (x * y + z * w)
    return np.angle(np.exp(1j * (np.arctan2(r10, r00) - _BASE_YAW)))


def proprio8_from_proprio13(proprio13: np.ndarray) -> np.ndarray:
    """(..., 8) PROPRIO8 from (..., 13) PROPRIO13 (the env's ``proprio``). Raises
    ``ObservationShapeError`` on any other last dimension."""
    p = np.asarray(proprio13, dtype=np.float32)
    if p.ndim == 0 or p.shape[-1] != PROPRIO13_DIM:
        raise ObservationShapeError(f"'proprio' must be (..., {PROPRIO13_DIM}) (the env's PROPRIO13), "
                                    f"got {p.shape}")
    yaw = peg_yaw(p[..., 3:7]).astype(np.float32)[..., None]
    return np.concatenate([p[..., :3], yaw, p[..., 7:10], p[..., 12:13]], axis=-1)


def action4_from_action(action: np.ndarray) -> np.ndarray:
    """(..., 4) ACTION4 from (..., 3) or (..., 4) env actions (a zero yaw appended to 3-D ones)."""
    a = np.asarray(action, dtype=np.float32)
    if a.ndim == 0 or a.shape[-1] not in (3, ACTION4_DIM):
        raise ObservationShapeError(f"'actions' must be (..., 3) or (..., 4), got {a.shape}")
    if a.shape[-1] == ACTION4_DIM:
        return a
    return np.concatenate([a, np.zeros((*a.shape[:-1], 1), np.float32)], axis=-1)


def yaw_quat(yaw: np.ndarray) -> np.ndarray:
    """(..., 4) (x, y, z, w) quaternions of pure rotations by ``yaw`` (rad) about z (the reference
    layout's ``ee_yaw`` and ``ee_yaw_delta``)."""
    yaw = np.asarray(yaw, dtype=np.float64)
    zero = np.zeros_like(yaw)
    return np.stack([zero, zero, np.sin(yaw / 2), np.cos(yaw / 2)], -1).astype(np.float32)
