"""Extending mmrep: a modality that the datasets do not record yet, the arm's joint torques (7 torques
in N m, (7,) float32, as the impedance controller commanded them at the last physics substep: a joint
torque sensor's reading without its noise), registered from a module outside the package
(docs/extending.md).

Unlike ``joints_modality`` (held by arrays every dataset already has), this modality names no
``recorded`` arrays, so ``mmrep collect`` with ``env.extra_observations=[joint_torque]`` stores it as
``obs/joint_torque`` (T+1, 7) and training reads it from there.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from gymnasium import spaces

from sim.modalities import Modality, as_float32, register_modality

TORQUE_DIM = 7
TORQUE_LIMIT = 500.0  # N m: beyond any torque the controller commands; the observation space must be finite

register_modality(Modality(
    "joint_torque", camera=False, shape=lambda s, n: (TORQUE_DIM,), to_model=as_float32,
    space=lambda s, n: spaces.Box(-TORQUE_LIMIT, TORQUE_LIMIT, (TORQUE_DIM,), np.float32),
    observe=lambda env: np.clip(env.robot.last_torque, -TORQUE_LIMIT, TORQUE_LIMIT).astype(np.float32),
    doc="commanded arm joint torques (N m), (7,)"), replace=True)

if importlib.util.find_spec("torch") is not None:  # the torch half: only where torch is installed
    from torch import nn

    from mmrep.modalities import register_encoder_builder
    from mmrep.models.experts import LEAK

    class TorqueEncoder(nn.Module):
        """(B, 7) N m -> (mu, logvar), each (B, z_dim): an MLP 7-64 to 2 x z_dim on torques / 50 N m."""

        def __init__(self, z_dim: int) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(TORQUE_DIM, 64), nn.LeakyReLU(LEAK), nn.Linear(64, 2 * z_dim))

        def forward(self, joint_torque):
            return self.net(joint_torque / 50.0).chunk(2, dim=1)

    register_encoder_builder("joint_torque", lambda cfg: TorqueEncoder(cfg.z_dim), replace=True)
