"""Exact optical flow: known motions give the right pixel displacements; static things give zero."""

import numpy as np
import pybullet as p
import pytest

from sim.camera import Camera
from sim.flow import body_link_poses, optical_flow, project, unproject


@pytest.fixture
def scene():
    """A DIRECT client with a ground plane and one free box (12 cm cube) in front of the camera."""
    import pybullet_data

    c = p.connect(p.DIRECT)
    p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
    plane = p.loadURDF("plane.urdf", physicsClientId=c)
    col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[0.06] * 3, physicsClientId=c)
    vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[0.06] * 3, rgbaColor=[1, 0.5, 0, 1],
                              physicsClientId=c)
    box = p.createMultiBody(1.0, col, vis, basePosition=[0.6, 0.0, 0.1], physicsClientId=c)
    cam = Camera(c, 128, (0.6, 0.0, 0.07), 0.6, 90.0, -35.0, 45.0)  # yaw 90: world y along image rows
    yield c, cam, box, plane
    p.disconnect(physicsClientId=c)


def _flow_after_move(c, cam, box, new_pos, new_quat=(0, 0, 0, 1)):
    f0 = cam.render(segmentation=True)
    poses0 = body_link_poses(c, [box])
    p.resetBasePositionAndOrientation(box, new_pos, new_quat, physicsClientId=c)
    f1 = cam.render(segmentation=True)
    poses1 = body_link_poses(c, [box])
    return f0, f1, optical_flow(f0.depth, f0.seg, poses0, poses1, cam.view, cam.proj)


def test_unproject_then_project_is_identity(scene):
    c, cam, box, _ = scene
    frame = cam.render()
    pts = unproject(frame.depth, cam.view, cam.proj)
    pix = project(pts, cam.view, cam.proj, 128)
    cols, rows = np.meshgrid(np.arange(128), np.arange(128))
    assert np.allclose(pix[..., 0], cols, atol=1e-6) and np.allclose(pix[..., 1], rows, atol=1e-6)


def test_translation_gives_projected_displacement(scene):
    c, cam, box, _ = scene
    f0, f1, flow = _flow_after_move(c, cam, box, [0.6, 0.02, 0.1])  # 2 cm along world y
    mask0 = f0.seg == box
    assert mask0.sum() > 200
    # The camera (yaw 90) has world y parallel to its image rows: a pinhole moves a point at
    # optical depth z by f * |d| / z pixels along the row, and not at all along the column.
    focal = 64 / np.tan(np.radians(45.0) / 2)
    z = f0.depth[..., 0][mask0]
    assert np.allclose(np.abs(flow[mask0][:, 0]), focal * 0.02 / z, rtol=1e-3)
    assert np.abs(flow[mask0][:, 1]).max() < 1e-3
    # Independent of our projection code: the rendered silhouette moves the same way, as far.
    rows, cols = np.nonzero(mask0)
    rows1, cols1 = np.nonzero(f1.seg == box)
    shift = np.array([cols1.mean() - cols.mean(), rows1.mean() - rows.mean()])
    assert np.allclose(flow[mask0].mean(axis=0), shift, atol=0.6), shift


def test_flow_lands_each_pixel_on_the_body(scene):
    c, cam, box, _ = scene
    quat = p.getQuaternionFromEuler([0, 0, 0.15])
    f0, f1, flow = _flow_after_move(c, cam, box, [0.61, 0.015, 0.1], quat)
    mask0 = f0.seg == box
    rows, cols = np.nonzero(mask0)
    tc = np.rint(cols + flow[rows, cols, 0]).astype(int).clip(0, 127)
    tr = np.rint(rows + flow[rows, cols, 1]).astype(int).clip(0, 127)
    # Pixels that become hidden by the move are few; nearly all land on the body at t+1.
    assert (f1.seg[tr, tc] == box).mean() > 0.9


def test_static_background_has_zero_flow(scene):
    c, cam, box, plane = scene
    f0, _, flow = _flow_after_move(c, cam, box, [0.6, 0.02, 0.1])
    background = f0.seg != box
    assert background.sum() > 1000
    assert np.abs(flow[background]).max() == 0.0


def test_no_motion_no_flow(scene):
    c, cam, box, _ = scene
    _, _, flow = _flow_after_move(c, cam, box, [0.6, 0.0, 0.1])
    assert not flow.any()


def test_env_flow_moves_peg_pixels_only(make_env):
    env = make_env(compute_flow=True)
    env.reset(seed=0)
    u = env.unwrapped
    for _ in range(3):
        seg = u.camera.render(segmentation=True).seg  # the frame the step's flow starts from
        obs, _, _, _, info = env.step(np.array([1.0, 0.0, 0.0], dtype=np.float32))  # across the view
    flow = info["flow"]
    assert flow.shape == (128, 128, 2) and flow.dtype == np.float32
    block = seg == u.task.uid
    assert block.any() and not flow[block].any()
    peg = seg == u.robot.uid + ((7 + 1) << 24)
    assert peg.any() and np.abs(flow[peg]).mean() > 0.5
