"""The named conversions between views of an observation (sim.observation)."""

import numpy as np
import pybullet as p
import pytest

from sim.observation import (
    ObservationShapeError,
    action4_from_action,
    peg_yaw,
    proprio8_from_proprio13,
    tool_down_quat,
)


@pytest.mark.parametrize("yaw", [0.0, 0.4, -1.3, 3.0])
def test_peg_yaw_inverts_tool_down_quat_and_matches_pybullet(yaw):
    q = tool_down_quat(yaw)
    assert peg_yaw(q) == pytest.approx(yaw, abs=1e-12)
    assert np.allclose(q, p.getQuaternionFromEuler([np.pi, 0.0, np.pi + yaw]), atol=1e-15)
    assert np.array_equal(tool_down_quat(0.0), np.asarray(p.getQuaternionFromEuler([np.pi, 0.0, np.pi])))


def test_proprio8_from_proprio13_layout():
    p13 = np.arange(13, dtype=np.float32)
    p13[3:7] = tool_down_quat(0.25)
    p8 = proprio8_from_proprio13(np.stack([p13, p13]))
    assert p8.shape == (2, 8)
    assert np.allclose(p8[0, :3], p13[:3]) and p8[0, 3] == pytest.approx(0.25, abs=1e-6)
    assert np.allclose(p8[0, 4:7], p13[7:10]) and p8[0, 7] == p13[12]
    with pytest.raises(ObservationShapeError, match=r"'proprio' must be \(\.\.\., 13\)"):
        proprio8_from_proprio13(np.zeros(8, np.float32))


def test_action4_pads_a_zero_yaw():
    assert np.array_equal(action4_from_action(np.ones((5, 3), np.float32))[:, 3], np.zeros(5))
    assert action4_from_action(np.ones(4, np.float32)).shape == (4,)
    with pytest.raises(ObservationShapeError, match="actions"):
        action4_from_action(np.ones(2, np.float32))
