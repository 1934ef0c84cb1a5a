"""A fixed RGB-D camera rendered with PyBullet's TinyRenderer (CPU, deterministic)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pybullet as p

from sim.config import FAR_PLANE, NEAR_PLANE
from sim.detmath import matmul

NEAR = NEAR_PLANE  # m, clipping planes (defined with the config, which checks against it)
FAR = FAR_PLANE


@dataclass
class Frame:
    """One rendered frame.

    rgb: (H, W, 3) uint8. depth: (H, W, 1) float32, metres along the optical axis.
    seg: (H, W) int32 PyBullet segmentation (``uid + ((link + 1) << 24)``, -1 background) or None.
    """

    rgb: np.ndarray
    depth: np.ndarray
    seg: np.ndarray | None


_CORNER_SIGNS = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1],
                          [1, 0, 0], [1, 0, 1], [1, 1, 0], [1, 1, 1]], dtype=bool)


@lru_cache(maxsize=64)
def _mesh_bounds(filename: str) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounds (min (3,), max (3,)) of the vertices of a Wavefront OBJ file, metres."""
    with open(filename) as f:
        verts = np.array([line.split()[1:4] for line in f if line.startswith("v ")], dtype=float)
    return verts.min(axis=0), verts.max(axis=0)


class Camera:
    """Pinhole camera looking at ``target`` from ``distance`` at ``yaw``/``pitch`` degrees.

    ``view`` and ``proj`` are 4x4 numpy matrices acting on column vectors (PyBullet's are column-major
    flat lists); ``proj @ view`` maps world points to clip space.
    """

    def __init__(self, client: int, size: int, target: tuple[float, float, float], distance: float,
                 yaw: float, pitch: float, fov: float) -> None:
        self.client = client
        self.size = size
        self._pose = (distance, yaw, pitch)
        self.aim(target)
        self._proj_list = p.computeProjectionMatrixFOV(fov, 1.0, NEAR, FAR)
        self.proj = np.asarray(self._proj_list).reshape(4, 4).T
        self._cull: list[tuple[int, int, tuple, np.ndarray]] = []
        self._shown: dict[tuple[int, int], bool] = {}
        self._backdrop: int | None = None  # a static body drawn once per view (cache_backdrop)
        self._backdrop_frame: tuple | None = None  # (view, look and flags; rgba, zbuf, seg)
        self.backdrop_redraws = 0  # frames drawn whole because the backdrop tied with the scene

    def aim(self, target: tuple[float, float, float] | np.ndarray) -> None:
        """Look at ``target`` (m, world), the distance, yaw and pitch unchanged: the whole camera
        moves with it (e.g. a per-episode extrinsic calibration error, ``camera_target_error``)."""
        distance, yaw, pitch = self._pose
        self._view_list = p.computeViewMatrixFromYawPitchRoll([float(v) for v in target], distance, yaw, pitch,
                                                              0.0, 2)
        self.view = np.asarray(self._view_list).reshape(4, 4).T

    @property
    def hidden_links(self) -> list[tuple[int, int]]:
        """(body, link) pairs hidden from the last render (outside the view)."""
        return [key for key, shown in self._shown.items() if not shown]

    def cull_links(self, body: int, margin: float = 0.02) -> None:
        """Skip drawing the links of ``body`` that lie wholly outside the view.

        TinyRenderer transforms every triangle of every visible shape, and the arm's meshes cost about
        two thirds of a render; most of the arm is above the image. Before each render, each mesh's
        bounding box (from its vertices, grown by ``margin`` m, moved with its link) is tested against
        the view frustum, and links outside it are made transparent, which TinyRenderer skips. The
        image is unchanged (tests/test_env.py checks pixel equality): only shapes that could not appear
        in it are skipped.
        """
        for d in p.getVisualShapeData(body, physicsClientId=self.client):
            link, geom, scale, filename, pos, orn, colour = d[1], d[2], d[3], d[4], d[5], d[6], d[7]
            if geom != p.GEOM_MESH:
                continue  # primitives are cheap to draw
            lo, hi = _mesh_bounds(filename.decode())
            lo, hi = lo * np.asarray(scale) - margin, hi * np.asarray(scale) + margin
            corners = np.where(_CORNER_SIGNS, hi, lo)
            rot = np.asarray(p.getMatrixFromQuaternion(orn)).reshape(3, 3)
            self._cull.append((body, link, colour, matmul(corners, rot.T) + np.asarray(pos)))
            self._shown[(body, link)] = True

    def show_all(self) -> None:
        """Draw every culled link again (e.g. before rendering the scene with another camera)."""
        for body, link, colour, _ in self._cull:
            if not self._shown[(body, link)]:
                p.changeVisualShape(body, link, rgbaColor=colour, physicsClientId=self.client)
                self._shown[(body, link)] = True

    def cache_backdrop(self, body: int) -> None:
        """Draw ``body`` (one static shape: the floor) once per camera pose instead of every frame.

        The floor plane spans the whole image, and TinyRenderer shades every pixel of it in every frame:
        about three quarters of a render. Its image depends only on the camera and on itself (no shadows
        are drawn, and TinyRenderer blends nothing: a translucent shape is drawn opaque), so it is drawn
        alone once per view (``aim``) and each frame draws the rest of the scene without it.
        TinyRenderer keeps, per pixel, the fragment nearest the camera, so the frame is the nearer of
        the two per pixel: the same image and depth as drawing both. Where the two depths are equal to
        the last bit and their colours differ, which the renderer's draw order decides, the frame is
        drawn whole (``backdrop_redraws`` counts them). The body is drawn again whenever the view, its
        pose, colour or texture change (a task that recolours the floor stays correct). Segmentation
        renders composite the floor's labels the same way.
        """
        shapes = p.getVisualShapeData(body, physicsClientId=self.client)
        if len(shapes) != 1:
            raise ValueError(f"cache_backdrop: body {body} has {len(shapes)} visual shapes; one expected")
        self._backdrop = body
        self._backdrop_frame = None

    def _draw(self, flags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One TinyRenderer draw: rgba (S, S, 4) uint8, PyBullet's depth buffer (S, S) float64 in [0, 1],
        and the segmentation labels (S, S) int32, or None where ``flags`` ask for no mask."""
        _, _, rgba, zbuf, seg = p.getCameraImage(
            self.size, self.size, self._view_list, self._proj_list, renderer=p.ER_TINY_RENDERER,
            flags=flags, shadow=0, physicsClientId=self.client)
        return (np.asarray(rgba, dtype=np.uint8).reshape(self.size, self.size, 4),
                np.asarray(zbuf, dtype=np.float64).reshape(self.size, self.size),
                None if flags & p.ER_NO_SEGMENTATION_MASK
                else np.asarray(seg, dtype=np.int32).reshape(self.size, self.size))

    def _set_alpha(self, body: int, link: int, colour: tuple, alpha: float) -> None:
        p.changeVisualShape(body, link, rgbaColor=(colour[0], colour[1], colour[2], alpha),
                            physicsClientId=self.client)

    def _draw_over_backdrop(self, flags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The frame as ``_draw(flags)`` would give it (the labels as an (S, S) int32 array), with the
        backdrop drawn once per view."""
        body = self._backdrop
        look = p.getVisualShapeData(body, flags=p.VISUAL_SHAPE_DATA_TEXTURE_UNIQUE_IDS,
                                    physicsClientId=self.client)[0]
        colour = look[7]
        pose = p.getBasePositionAndOrientation(body, physicsClientId=self.client)
        key = (self._view_list, self._proj_list, look, pose, flags)
        if self._backdrop_frame is None or self._backdrop_frame[0] != key:
            others = [(d[0], d[1], d[7]) for b in range(p.getNumBodies(physicsClientId=self.client))
                      for d in p.getVisualShapeData(p.getBodyUniqueId(b, physicsClientId=self.client),
                                                    physicsClientId=self.client)
                      if d[0] != body and d[7][3] > 0]
            for b, link, c in others:
                self._set_alpha(b, link, c, 0.0)
            try:
                drawn = self._draw(flags)
            finally:
                for b, link, c in others:
                    p.changeVisualShape(b, link, rgbaColor=c, physicsClientId=self.client)
            self._backdrop_frame = (key, *drawn)
        _, back_rgba, back_zbuf, back_seg = self._backdrop_frame
        self._set_alpha(body, -1, colour, 0.0)
        try:
            rgba, zbuf, seg = self._draw(flags)
        finally:
            p.changeVisualShape(body, -1, rgbaColor=colour, physicsClientId=self.client)
        # PyBullet's depth buffer rises with distance, so the smaller value is the nearer fragment
        behind = zbuf > back_zbuf
        differs = (rgba != back_rgba).any(axis=2)
        if seg is not None:
            differs |= seg != back_seg
        if ((zbuf == back_zbuf) & differs).any():
            self.backdrop_redraws += 1
            return self._draw(flags)
        return (np.where(behind[..., None], back_rgba, rgba), np.where(behind, back_zbuf, zbuf),
                None if seg is None else np.where(behind, back_seg, seg))

    def _apply_culling(self) -> None:
        poses: dict[tuple[int, int], tuple] = {}
        for body in {c[0] for c in self._cull}:
            links = sorted(c[1] for c in self._cull if c[0] == body and c[1] >= 0)
            for link, state in zip(links, p.getLinkStates(body, links, computeForwardKinematics=1,
                                                            physicsClientId=self.client)):
                poses[(body, link)] = (state[4], state[5])
            poses[(body, -1)] = p.getBasePositionAndOrientation(body, physicsClientId=self.client)
        # All links' box corners in one batch: (L, 8, 3) local -> world -> clip space.
        rots = np.stack([np.asarray(p.getMatrixFromQuaternion(poses[(b, k)][1])).reshape(3, 3)
                         for b, k, _, _ in self._cull])
        trans = np.stack([poses[(b, k)][0] for b, k, _, _ in self._cull])
        corners = np.stack([c[3] for c in self._cull])
        world = np.einsum("lij,lkj->lki", rots, corners) + trans[:, None, :]
        clip = matmul(np.concatenate([world, np.ones(world.shape[:2] + (1,))], axis=2), matmul(self.proj, self.view).T)
        x, y, z, w = np.moveaxis(clip, 2, 0)
        outside = ((x < -w).all(1) | (x > w).all(1) | (y < -w).all(1) | (y > w).all(1)
                   | (z < -w).all(1) | (w <= 0).all(1))
        for (body, link, colour, _), out in zip(self._cull, outside):
            shown = not out
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
        rgba, zbuf, seg = self._draw_over_backdrop(flags) if self._backdrop is not None else self._draw(flags)
        depth = (FAR * NEAR / (FAR - (FAR - NEAR) * zbuf)).astype(np.float32)[..., None]
        return Frame(np.ascontiguousarray(rgba[..., :3]), depth, seg)
