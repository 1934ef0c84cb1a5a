"""Exact optical flow from depth, segmentation and rigid-body poses.

Each visible pixel is lifted to a 3-D point with its depth, attached to the rigid body (and link)
that the segmentation names, moved with that body's pose change from t to t+1, and reprojected.
Pixels of bodies that did not move, and background pixels, get zero flow.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pybullet as p

from sim.camera import FAR, NEAR
from sim.detmath import inv, matmul, rigid_inv, transform

Pose = np.ndarray  # (4, 4) homogeneous transform, world from body


def pose_matrix(pos, quat) -> Pose:
    """(4, 4) transform from a position (3,) and an (x, y, z, w) quaternion."""
    T = np.eye(4)
    T[:3, :3] = np.asarray(p.getMatrixFromQuaternion(quat)).reshape(3, 3)
    T[:3, 3] = pos
    return T


def body_link_poses(client: int, bodies: list[int]) -> dict[int, Pose]:
    """World poses of every link of ``bodies``, keyed by their segmentation value
    (``uid + ((link + 1) << 24)``; the base is link -1)."""
    poses: dict[int, Pose] = {}
    for uid in bodies:
        pos, quat = p.getBasePositionAndOrientation(uid, physicsClientId=client)
        poses[uid] = pose_matrix(pos, quat)
        n = p.getNumJoints(uid, physicsClientId=client)
        if n:
            states = p.getLinkStates(uid, list(range(n)), computeForwardKinematics=1,
                                     physicsClientId=client)
            for link, s in enumerate(states):
                poses[uid + ((link + 1) << 24)] = pose_matrix(s[4], s[5])
    return poses


def _as_bytes(*matrices: np.ndarray) -> list[bytes]:
    return [np.ascontiguousarray(m, dtype=np.float64).tobytes() for m in matrices]


@lru_cache(maxsize=8)
def _clip_matrices(view: bytes, proj: bytes) -> tuple[np.ndarray, np.ndarray]:
    """World-to-clip matrix ``proj @ view`` (4, 4) and its inverse, of a camera's matrices (as bytes:
    a camera's are fixed, so they are computed once per camera)."""
    pv = matmul(np.frombuffer(proj).reshape(4, 4), np.frombuffer(view).reshape(4, 4))
    return pv, inv(pv)


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre NDC coordinates (x right, y up) of a size x size image, each (size, size)."""
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    ndc_x, ndc_y = np.meshgrid(c, -c)
    return ndc_x, ndc_y


def unproject(depth: np.ndarray, view: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """(H, W, 3) world points of the pixels of a metric ``depth`` image (H, W) or (H, W, 1)."""
    d = depth.reshape(depth.shape[0], depth.shape[1]).astype(np.float64)
    ndc_x, ndc_y = pixel_grid(d.shape[0])
    # Metric depth back to the NDC depth that the projection produced.
    zbuf = (FAR - FAR * NEAR / d) / (FAR - NEAR)
    world = transform([ndc_x, ndc_y, 2.0 * zbuf - 1.0], _clip_matrices(*_as_bytes(view, proj))[1])
    return world[..., :3] / world[..., 3:4]


def project(points: np.ndarray, view: np.ndarray, proj: np.ndarray, size: int) -> np.ndarray:
    """(..., 2) pixel coordinates (column, row; pixel centres at integers) of world ``points`` (..., 3)."""
    clip = transform(points, _clip_matrices(*_as_bytes(view, proj))[0])
    ndc = clip[..., :2] / clip[..., 3:4]
    col = (ndc[..., 0] + 1.0) / 2.0 * size - 0.5
    row = (1.0 - ndc[..., 1]) / 2.0 * size - 0.5
    return np.stack([col, row], axis=-1)


def optical_flow(depth_t: np.ndarray, seg_t: np.ndarray, poses_t: dict[int, Pose],
                 poses_t1: dict[int, Pose], view: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """Exact flow from frame t to t+1.

    Args:
        depth_t: (H, W) or (H, W, 1) metres, frame t.
        seg_t: (H, W) int32 segmentation of frame t (``uid + ((link + 1) << 24)``, -1 background).
        poses_t, poses_t1: world poses keyed by segmentation value at t and t+1 (``body_link_poses``).
        view, proj: the camera's 4x4 matrices (``Camera.view``, ``Camera.proj``).

    Returns:
        (H, W, 2) float32 pixel displacement (d column, d row) of each pixel's surface point.
    """
    size = seg_t.shape[0]
    flow = np.zeros((size, size, 2), dtype=np.float32)
    moving = []
    for key, T0 in poses_t.items():
        T1 = poses_t1.get(key)
        if T1 is not None and not np.allclose(T0, T1, atol=1e-12, rtol=0):
            moving.append((key, matmul(T1, rigid_inv(T0))))
    if not moving:
        return flow
    points = unproject(depth_t, view, proj)
    pixels = None
    for key, motion in moving:
        mask = seg_t == key
        if not mask.any():
            continue
        if pixels is None:
            pixels = project(points, view, proj, size)
        pts = points[mask]
        moved = transform(pts, motion[:3])
        flow[mask] = (project(moved, view, proj, size) - pixels[mask]).astype(np.float32)
    return flow
