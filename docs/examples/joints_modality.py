"""Extending mmrep, example (a): a new modality, the arm's joint state (7 joint angles in rad, 7 joint
velocities in rad/s: (14,) float32), registered from a module outside the package (docs/extending.md).

Importing this module registers both halves: the torch-free one (``sim.modalities``: key, space, how the
env observes it, which recorded arrays hold it, the conversion to model input) and the encoder network
it gets (``mmrep.modalities``). Name it in ``env.plugins`` / ``model.plugins`` and the env observes
it (``env.extra_observations=[joints]``), training reads it (``model.extra_modalities=[joints]``; every
native dataset already records ``obs/joint_pos`` and ``obs/joint_vel``) and a policy's encoder uses it.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from gymnasium import spaces

from sim.modalities import Modality, as_float32, register_modality

JOINTS_DIM = 14
JOINTS_LIMIT = 50.0  # rad, rad/s: far beyond the arm's range; the observation space must be finite

register_modality(Modality(
    "joints", camera=False, shape=lambda s, n: (JOINTS_DIM,), to_model=as_float32,
    space=lambda s, n: spaces.Box(-JOINTS_LIMIT, JOINTS_LIMIT, (JOINTS_DIM,), np.float32),
    observe=lambda env: env.robot.substep_state()[0],  # (14,): joint angles, then joint velocities
    recorded=("joint_pos", "joint_vel"), doc="joint angles (rad) and velocities (rad/s), (14,)"),
    replace=True)  # replace: the module may be imported again (tests, notebooks)

if importlib.util.find_spec("torch") is not None:  # the torch half: only where torch is installed
    from torch import nn

    from mmrep.modalities import register_encoder_builder
    from mmrep.models.experts import LEAK

    class JointsEncoder(nn.Module):
        """(B, 14) -> (mu, logvar), each (B, z_dim): an MLP 14-64-64 to 2 x z_dim."""

        def __init__(self, z_dim: int) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(JOINTS_DIM, 64), nn.LeakyReLU(LEAK), nn.Linear(64, 64),
                                     nn.LeakyReLU(LEAK), nn.Linear(64, 2 * z_dim))

        def forward(self, joints):
            return self.net(joints).chunk(2, dim=1)

    register_encoder_builder("joints", lambda cfg: JointsEncoder(cfg.z_dim), replace=True)
