"""Geometry of pegs and holes, and the generated robot URDF (KUKA iiwa + F/T joint + peg).

Cross-sections are convex polygons in the peg (or hole) frame, metres, counter-clockwise. A peg of
``width`` w has inradius w/2 (round and semicircle: radius w/2); its hole has the same shape grown by
``clearance``/2 on every side, so "clearance = hole width - peg width" holds for every shape.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pybullet_data

from sim.detmath import matmul, norm

ROUND_SEGMENTS = 32  # polygon sides standing in for a circle (radial error 0.07 mm at 30 mm)
FLANGE_OFFSET = 0.045  # m, iiwa link-7 frame to the flange face, along link-7 z
PEG_MASS = 0.1  # kg
# Bullet pads convex hulls with a collision margin and rounds box edges by it. PyBullet's URDF importer
# fixes it at 1 mm, which acts like a 1 mm chamfer on the peg and lets pegs landing on the rim slide
# in by themselves; so the peg hull is created programmatically with a small margin and shrunk by it,
# which puts its faces where the visual mesh says and keeps the 2 mm clearance real
# (tests/test_env.py::test_clearance_as_built).
PEG_MARGIN = 0.0002  # m
BOX_MARGIN = 0.0002  # m, margin of the block's wall boxes


def regular_polygon(n: int, inradius: float, phase: float = 0.0) -> np.ndarray:
    """(n, 2) vertices of a regular n-gon whose edges are tangent to a circle of ``inradius``."""
    circum = inradius / math.cos(math.pi / n)
    angles = phase + math.pi / n + 2 * math.pi * np.arange(n) / n
    return np.stack([circum * np.cos(angles), circum * np.sin(angles)], axis=1)


def semicircle_polygon(radius: float, flat_offset: float = 0.0, segments: int = 16,
                       circumscribed: bool = False) -> np.ndarray:
    """(segments+1, 2) vertices of a D shape: the part of a disc of ``radius`` with y >= -flat_offset.

    ``circumscribed`` puts the arc's edges tangent to the circle (for holes) instead of its vertices
    on it (for pegs), so a peg never pokes through a hole of the same nominal radius. The flat side is
    the closing edge between the arc's two ends.
    """
    r = radius / math.cos(math.pi / (2 * segments)) if circumscribed else radius
    start = math.asin(max(-1.0, min(1.0, -flat_offset / r)))
    angles = np.linspace(start, math.pi - start, segments + 1)
    return np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)


def cross_section(shape: str, width: float, grow: float = 0.0, hole: bool = False) -> np.ndarray:
    """Polygon of a peg (``grow=0``) or of its hole (``grow=clearance/2``, ``hole=True``)."""
    r = width / 2 + grow
    if shape == "square":
        return regular_polygon(4, r)
    if shape == "triangle":
        return regular_polygon(3, r, phase=math.pi / 6)
    if shape == "hexagon":
        return regular_polygon(6, r)
    if shape == "round":
        return regular_polygon(ROUND_SEGMENTS, r) if hole else _inscribed_circle(r)
    if shape == "semicircle":
        return semicircle_polygon(r, flat_offset=grow, circumscribed=hole)
    raise ValueError(f"peg_shape {shape!r} has no cross-section")


def _inscribed_circle(radius: float) -> np.ndarray:
    angles = 2 * math.pi * np.arange(ROUND_SEGMENTS) / ROUND_SEGMENTS
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def hole_wall_boxes(shape: str, peg_width: float, clearance: float, height: float,
                    thickness: float = 0.04) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Boxes whose union is a block with a through-hole of the given shape.

    Returns ``(half_extents (3,), yaw (rad), centre (3,))`` per wall, in the box's frame whose origin is
    the hole centre at the block's bottom. One wall per polygon edge, lying outside the edge's line,
    so no wall intrudes into the (convex) hole.
    """
    poly = cross_section(shape, peg_width, grow=clearance / 2, hole=True)
    walls = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        edge = b - a
        length = norm(edge)
        tangent = edge / length
        normal = np.array([tangent[1], -tangent[0]])  # outward for a counter-clockwise polygon
        mid = (a + b) / 2 + normal * thickness / 2
        # Extend along the edge so neighbouring walls overlap at the corners.
        half = np.array([length / 2 + thickness, thickness / 2, height / 2])
        yaw = math.atan2(tangent[1], tangent[0])
        walls.append((half, yaw, np.array([mid[0], mid[1], height / 2])))
    return walls


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def prism_obj(polygon: np.ndarray, length: float) -> str:
    """Wavefront OBJ text of a prism: ``polygon`` extruded from z=-length/2 to z=+length/2."""
    n = len(polygon)
    lines = [f"v {x:.7f} {y:.7f} {z:.7f}" for z in (-length / 2, length / 2) for x, y in polygon]
    faces = []
    for i in range(n):
        j = (i + 1) % n
        faces.append((i + 1, j + 1, n + j + 1))
        faces.append((i + 1, n + j + 1, n + i + 1))
    for i in range(1, n - 1):  # caps as fans
        faces.append((1, i + 2, i + 1))
        faces.append((n + 1, n + i + 1, n + i + 2))
    lines += [f"f {a} {b} {c}" for a, b, c in faces]
    return "\n".join(lines) + "\n"


_BOX_FACES = ((0, 2, 1), (0, 3, 2), (4, 5, 6), (4, 6, 7), (0, 1, 5), (0, 5, 4),
              (1, 2, 6), (1, 6, 5), (2, 3, 7), (2, 7, 6), (3, 0, 4), (3, 4, 7))


def boxes_obj(boxes: list[tuple[np.ndarray, float, np.ndarray]]) -> str:
    """Wavefront OBJ text of a union of yawed boxes ``(half_extents, yaw, centre)`` (overlaps allowed)."""
    lines, faces = [], []
    corners = np.array([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1],
                        [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype=float)
    for k, (half, yaw, centre) in enumerate(boxes):
        c, s = math.cos(yaw), math.sin(yaw)
        rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        for v in matmul(corners * half, rot.T) + centre:
            lines.append(f"v {v[0]:.7f} {v[1]:.7f} {v[2]:.7f}")
        faces += [f"f {8 * k + a + 1} {8 * k + b + 1} {8 * k + d + 1}" for a, b, d in _BOX_FACES]
    return "\n".join(lines + faces) + "\n"


def block_visual_mesh(shape: str, peg_width: float, clearance: float, height: float) -> Path:
    """Write (once) and return the OBJ used to draw the block with its hole.

    One mesh rather than one visual shape per wall: PyBullet's createVisualShapeArray crashes
    (segfault) with the 32 walls of a round hole.
    """
    boxes = hole_wall_boxes(shape, peg_width, clearance, height)
    text = boxes_obj(boxes)
    key = hashlib.sha1(text.encode()).hexdigest()[:12]
    out = asset_dir() / f"block_{shape}_{key}.obj"
    if not out.exists():
        _write_atomic(out, text)
    return out


def peg_hull(shape: str, peg_width: float, peg_length: float) -> np.ndarray:
    """(2N, 3) collision hull vertices of the peg in its link frame (z from the flange to the tip),
    shrunk by PEG_MARGIN so that hull plus margin has the nominal size."""
    poly = cross_section(shape, peg_width, grow=-PEG_MARGIN)
    return np.array([[x, y, z] for z in (PEG_MARGIN, peg_length - PEG_MARGIN) for x, y in poly])


def asset_dir() -> Path:
    """Folder for generated assets (per user, reused across runs; files are content-addressed)."""
    return Path(os.environ.get("MMREP_ASSET_DIR", Path(tempfile.gettempdir()) / "mmrep_assets"))


def robot_urdf(shape: str, peg_width: float, peg_length: float) -> Path:
    """Write (once) and return a copy of pybullet_data's iiwa URDF with an F/T joint and a peg.

    Changes to the original: absolute mesh paths; joint damping 0 (PyBullet applies it silently);
    link-7 inertia raised to 5e-3 (its tiny inertia chatters at 240 Hz); a fixed joint ``ft_joint``
    at the flange carrying link ``peg`` whose frame origin is the flange and whose +z points out of
    the flange, so the peg tip sits at (0, 0, peg_length) in the peg frame. The peg has no
    collision element here: ``sim.robot.build_arm_with_peg`` adds it (see PEG_MARGIN).
    """
    data = Path(pybullet_data.getDataPath()) / "kuka_iiwa"
    # The copy names the meshes by absolute path, so the key holds where they are: a cached copy made
    # by another environment (a removed virtualenv, another checkout) is never reused.
    key = hashlib.sha1(f"v5|{shape}|{peg_width:.6f}|{peg_length:.6f}|{data}".encode()).hexdigest()[:12]
    out = asset_dir() / f"iiwa_peg_{shape}_{key}.urdf"
    if out.exists():
        return out
    text = (data / "model.urdf").read_text()
    text = text.replace('filename="meshes/', f'filename="{data}/meshes/')
    text = re.sub(r'<dynamics damping="[0-9.]+"/>', '<dynamics damping="0.0"/>', text)
    text = text.replace(
        '<inertia ixx="0.001" ixy="0" ixz="0" iyy="0.001" iyz="0" izz="0.001"/>',
        '<inertia ixx="0.005" ixy="0" ixz="0" iyy="0.005" iyz="0" izz="0.005"/>')
    mesh = asset_dir() / f"peg_{shape}_{key}.obj"
    _write_atomic(mesh, prism_obj(cross_section(shape, peg_width), peg_length))
    half = peg_length / 2
    peg = f"""
  <joint name="ft_joint" type="fixed">
    <parent link="lbr_iiwa_link_7"/>
    <child link="peg"/>
    <origin rpy="0 0 0" xyz="0 0 {FLANGE_OFFSET}"/>
  </joint>
  <link name="peg">
    <inertial>
      <origin rpy="0 0 0" xyz="0 0 {half}"/>
      <mass value="{PEG_MASS}"/>
      <inertia ixx="0.001" ixy="0" ixz="0" iyy="0.001" iyz="0" izz="0.001"/>
    </inertial>
    <visual>
      <origin rpy="0 0 0" xyz="0 0 {half}"/>
      <geometry><mesh filename="{mesh}"/></geometry>
      <material name="peg_orange"><color rgba="0.95 0.55 0.1 1"/></material>
    </visual>
  </link>
</robot>"""
    text = text.replace("</robot>", peg, 1)
    _write_atomic(out, text)
    return out
