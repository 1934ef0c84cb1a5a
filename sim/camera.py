"""A fixed RGB-D camera rendered with PyBullet's TinyRenderer (CPU, deterministic)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p

NEAR = 0.05  # m, clipping planes
FAR = 2.0


@dataclass
class Frame:
    """One rendered frame.

    rgb: (H, W, 3) uint8. depth: (H, W, 1) float32, metres along the optical axis.
    seg: (H, W) int32 PyBullet segmentation (``uid + ((link + 1) << 24)``, -1 background) or None.
    """

    rgb: np.ndarray
    depth: np.ndarray
    seg: np.ndarray | None


class Camera:
    """Pinhole camera looking at ``target`` from ``distance`` at ``yaw``/``pitch`` degrees.

    ``view`` and ``proj`` are 4x4 numpy matrices acting on column vectors (PyBullet's are column-major
    flat lists); ``proj @ view`` maps world points to clip space.
    """

    def __init__(self, client: int, size: int, target: tuple[float, float, float], distance: float,
                 yaw: float, pitch: float, fov: float) -> None:
        self.client = client
        self.size = size
        self._view_list = p.computeViewMatrixFromYawPitchRoll(list(target), distance, yaw, pitch, 0.0, 2)
        self._proj_list = p.computeProjectionMatrixFOV(fov, 1.0, NEAR, FAR)
        self.view = np.asarray(self._view_list).reshape(4, 4).T
        self.proj = np.asarray(self._proj_list).reshape(4, 4).T

    def render(self, segmentation: bool = False) -> Frame:
        """Render RGB, metric depth and (optionally) the segmentation mask."""
        flags = (p.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX if segmentation
                 else p.ER_NO_SEGMENTATION_MASK)
        _, _, rgba, zbuf, seg = p.getCameraImage(
            self.size, self.size, self._view_list, self._proj_list, renderer=p.ER_TINY_RENDERER,
            flags=flags, shadow=0, physicsClientId=self.client)
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(self.size, self.size, 4)
        zbuf = np.asarray(zbuf, dtype=np.float64).reshape(self.size, self.size)
        depth = (FAR * NEAR / (FAR - (FAR - NEAR) * zbuf)).astype(np.float32)[..., None]
        seg_arr = np.asarray(seg, dtype=np.int32).reshape(self.size, self.size) if segmentation else None
        return Frame(np.ascontiguousarray(rgba[..., :3]), depth, seg_arr)
