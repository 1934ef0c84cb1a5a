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
        self._cull: list[tuple[int, int, tuple, float]] = []
        self._shown: dict[tuple[int, int], bool] = {}

    def cull_links(self, body: int, margin: float = 0.02) -> None:
        """Skip drawing the links of ``body`` that lie wholly outside the view.

        TinyRenderer transforms every triangle of every visible shape, and the arm's meshes cost about
        two thirds of a render; most of the arm is above the image. Before each render, each link's
        bounding box (grown by ``margin`` m) is tested against the view frustum and links outside it
        are made transparent, which TinyRenderer skips. The image is unchanged: only shapes that could
        not appear in it are skipped.
        """
        data = p.getVisualShapeData(body, physicsClientId=self.client)
        colours = {d[1]: d[7] for d in data}
        self._cull.extend((body, link, colour, margin) for link, colour in colours.items())
        self._shown.update({(body, link): True for link in colours})

    def show_all(self) -> None:
        """Draw every culled link again (e.g. before rendering the scene with another camera)."""
        for body, link, colour, _ in self._cull:
            if not self._shown[(body, link)]:
                p.changeVisualShape(body, link, rgbaColor=colour, physicsClientId=self.client)
                self._shown[(body, link)] = True

    def _apply_culling(self) -> None:
        clip_from_world = self.proj @ self.view
        signs = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1],
                          [1, 0, 0], [1, 0, 1], [1, 1, 0], [1, 1, 1]], dtype=bool)
        for body, link, colour, margin in self._cull:
            lo, hi = p.getAABB(body, link, physicsClientId=self.client)
            lo, hi = np.asarray(lo) - margin, np.asarray(hi) + margin
            corners = np.where(signs, hi, lo)
            clip = np.concatenate([corners, np.ones((8, 1))], axis=1) @ clip_from_world.T
            x, y, z, w = clip.T
            outside = (np.all(x < -w) or np.all(x > w) or np.all(y < -w) or np.all(y > w)
                       or np.all(z < -w) or np.all(w <= 0))
            shown = not outside
            if shown != self._shown[(body, link)]:
                rgba = colour if shown else (colour[0], colour[1], colour[2], 0.0)
                p.changeVisualShape(body, link, rgbaColor=rgba, physicsClientId=self.client)
                self._shown[(body, link)] = shown

    def render(self, segmentation: bool = False) -> Frame:
        """Render RGB, metric depth and (optionally) the segmentation mask."""
        if self._cull:
            self._apply_culling()
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
