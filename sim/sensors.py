"""Wrist force/torque sensor model: tare, first-order low-pass, white noise, and the faults bias and drift."""

from __future__ import annotations

import math

import numpy as np

from sim.config import ForceTorqueConfig


class ForceTorqueSensor:
    """Turns raw F/T joint reactions into sensor readings, one physics substep at a time.

    Readings are (n, 6) float32: force (N) then moment (N m), in the sensor frame (the peg frame:
    +z points out of the flange along the peg). Sign: the wrench the wrist applies to the peg; after
    taring the peg's weight, a surface pushing back on the peg tip reads as +z force.
    """

    def __init__(self, cfg: ForceTorqueConfig, physics_hz: float) -> None:
        self.cfg = cfg
        self.alpha = (1.0 - math.exp(-2.0 * math.pi * cfg.lowpass_hz / physics_hz)
                      if cfg.lowpass_hz is not None else 1.0)
        self.noise_std = np.array([cfg.force_noise_std] * 3 + [cfg.torque_noise_std] * 3)
        self.bias = np.asarray(cfg.bias, dtype=float)  # N, N m: a sensor fault (off: zeros)
        self.drift = np.asarray(cfg.drift, dtype=float)  # N/s, N m/s: a sensor fault (off: zeros)
        self._state = np.zeros(6)

    def reset(self, initial: np.ndarray | None = None) -> None:
        """Restart the filter at ``initial`` (6,) (default zero: a tared sensor at rest)."""
        self._state = np.zeros(6) if initial is None else np.asarray(initial, dtype=float).copy()

    def process(self, raw: np.ndarray, offset: np.ndarray, rng: np.random.Generator,
                t0: float = 0.0, dt: float = 0.0) -> np.ndarray:
        """(n, 6) readings from (n, 6) raw reactions, subtracting ``offset`` (6,) when taring. The
        readings are taken at ``t0 + i dt`` s since the reset (the drift fault grows with it)."""
        x = raw - offset if self.cfg.tare else raw.copy()
        if self.alpha < 1.0:
            out = np.empty_like(x)
            s = self._state
            for i in range(x.shape[0]):
                s = s + self.alpha * (x[i] - s)
                out[i] = s
            self._state = s
            x = out
        if self.noise_std.any():
            x = x + rng.standard_normal(x.shape) * self.noise_std
        if self.bias.any():
            x = x + self.bias
        if self.drift.any():
            x = x + (t0 + dt * np.arange(x.shape[0]))[:, None] * self.drift
        return x.astype(np.float32)
