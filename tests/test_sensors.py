"""F/T sensor model: taring, first-order low-pass, seeded noise."""

import math

import numpy as np

from sim.config import ForceTorqueConfig
from sim.sensors import ForceTorqueSensor


def test_tare_removes_offset_exactly_without_noise():
    sensor = ForceTorqueSensor(ForceTorqueConfig(force_noise_std=0, torque_noise_std=0), 1000.0)
    offset = np.array([0.0, 0.0, -0.981, 0.0, 0.0, 0.0])
    raw = np.tile(offset, (50, 1)) + np.array([0, 0, 5.0, 0, 0, 0])
    out = sensor.process(raw, offset, np.random.default_rng(0))
    assert out.shape == (50, 6) and out.dtype == np.float32
    assert np.allclose(out[:, 2], 5.0) and np.allclose(out[:, [0, 1, 3, 4, 5]], 0.0)


def test_lowpass_step_response_is_first_order():
    cfg = ForceTorqueConfig(lowpass_hz=10.0, force_noise_std=0, torque_noise_std=0, tare=False)
    sensor = ForceTorqueSensor(cfg, 1000.0)
    step = np.tile([0, 0, 1.0, 0, 0, 0], (100, 1))
    out = sensor.process(step, np.zeros(6), np.random.default_rng(0))[:, 2]
    t = np.arange(1, 101) / 1000.0
    assert np.allclose(out, 1 - np.exp(-2 * math.pi * 10.0 * t), atol=1e-6)
    # The filter state carries over to the next control step.
    more = sensor.process(step[:1], np.zeros(6), np.random.default_rng(0))[0, 2]
    assert more > out[-1]


def test_noise_has_configured_std_and_is_seeded():
    cfg = ForceTorqueConfig(force_noise_std=0.5, torque_noise_std=0.01)
    a = ForceTorqueSensor(cfg, 1000.0).process(np.zeros((4000, 6)), np.zeros(6), np.random.default_rng(3))
    b = ForceTorqueSensor(cfg, 1000.0).process(np.zeros((4000, 6)), np.zeros(6), np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert abs(a[:, :3].std() - 0.5) < 0.03 and abs(a[:, 3:].std() - 0.01) < 0.001
