"""Per-modality experts (encoders) of the paper's reference architecture, each producing a Gaussian.

Every encoder maps its input to ``(mu, logvar)``, each (B, z_dim). Shapes and units:

    ImageEncoder  rgb   (B, 3, 128, 128) uint8 or float in [0, 255]; depth (B, 1, 128, 128) metres
    ForceEncoder  force (B, n, 6) float32, N and N m, sensor frame; the last 32 readings are used
                  (with ``summary``, also the mean and the last of all n)
    ProprioEncoder proprio (B, 8) float32: x, y, z (m), yaw (rad), vx, vy, vz (m/s), yaw rate (rad/s)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

LEAK = 0.1

# (out channels, kernel) of the six stride-2 convolutions: 128 -> 2 pixels.
IMAGE_CONVS = ((16, 7), (32, 5), (64, 5), (64, 3), (128, 3), (128, 3))


class ImageEncoder(nn.Module):
    """Six stride-2 convolutions 16(k7)-32(k5)-64(k5)-64(k3)-128(k3)-128(k3), then a linear layer to
    2 x z_dim. Also returns the feature maps after each convolution (for the flow decoder's skips).

    Args:
        in_channels: 3 for RGB (inputs scaled by 1/255 here), 1 for depth (metres, used as is).
        z_dim: latent size.
        image_size: input height = width (128 in the paper).
    """

    def __init__(self, in_channels: int, z_dim: int, image_size: int = 128, scale: float = 1.0) -> None:
        super().__init__()
        layers, c = [], in_channels
        for out, k in IMAGE_CONVS:
            layers.append(nn.Conv2d(c, out, k, stride=2, padding=k // 2))
            c = out
        self.convs = nn.ModuleList(layers)
        side = image_size // 2 ** len(IMAGE_CONVS)
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for six stride-2 convolutions")
        self.fc = nn.Linear(c * side * side, 2 * z_dim)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        h = x.float() * self.scale if x.dtype == torch.uint8 or self.scale != 1.0 else x
        skips = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), LEAK)
            skips.append(h)
        mu, logvar = self.fc(h.flatten(1)).chunk(2, dim=1)
        return mu, logvar, skips


class CausalConv1d(nn.Conv1d):
    """1-D convolution that only sees the present and the past (left padding)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(c_in, c_out, kernel, stride=stride)
        self.left = kernel - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left, 0)))


class ForceEncoder(nn.Module):
    """The last ``window`` F/T readings, soft-normalised with tanh (force / 20 N, moment / 1 N m),
    through five causal stride-2 1-D convolutions (32 -> 1 time steps) to 2 x z_dim.

    With ``summary`` (not in the paper), an MLP 12-64-128-2 x z_dim also reads the step's mean
    reading and its last one, standardised per channel with the training set's statistics (buffers
    ``mean``, ``std`` (12,), set by ``set_stats``), and its output is added to the convolution's.
    Why: while the peg presses on the rim, the hole's direction is in the step's mean moment over its
    vertical force (the centre of pressure, ``sim.peg_hole_experts.rim_direction``). Those moments
    are ~0.1 N m; the convolution alone, trained with the insertion head, did not keep them (on
    clean-pressing touch-setting data its z read the hole no better than proprioception alone).
    """

    def __init__(self, z_dim: int, window: int = 32, force_scale: float = 20.0,
                 torque_scale: float = 1.0, summary: bool = False) -> None:
        super().__init__()
        self.window = window
        chans = (6, 16, 32, 64, 128, 2 * z_dim)
        self.convs = nn.ModuleList(CausalConv1d(a, b, 2, 2) for a, b in zip(chans[:-1], chans[1:]))
        self.register_buffer("scale", torch.tensor([force_scale] * 3 + [torque_scale] * 3))
        self.summary = None
        if summary:
            self.register_buffer("mean", torch.zeros(12))
            self.register_buffer("std", torch.ones(12))
            self.summary = nn.Sequential(nn.Linear(12, 64), nn.LeakyReLU(LEAK), nn.Linear(64, 128),
                                         nn.LeakyReLU(LEAK), nn.Linear(128, 2 * z_dim))

    @torch.no_grad()
    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-channel statistics (12,) of the training steps' ``step_summary`` (N, N m); std is
        floored at 1e-3. Only with ``summary``."""
        if self.summary is None:
            raise ValueError("ForceEncoder.set_stats: this encoder has no summary branch (summary=False)")
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def forward(self, force: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = force[:, -self.window:]
        if x.shape[1] < self.window:  # fewer readings per step (240 Hz): repeat the first ones
            x = torch.cat([x[:, :1].expand(-1, self.window - x.shape[1], -1), x], dim=1)
        h = torch.tanh(x / self.scale).transpose(1, 2)
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = F.leaky_relu(h, LEAK)
        h = h.flatten(1)
        if self.summary is not None:
            h = h + self.summary((step_summary(force) - self.mean) / self.std)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar


def step_summary(force: torch.Tensor) -> torch.Tensor:
    """(B, 12): the mean and the last of each step's F/T readings (``force``: (B, n, 6), N and N m,
    sensor frame); the ``ForceEncoder`` summary's input (and ``mmrep.probe.ft_summary``'s features)."""
    return torch.cat([force.mean(dim=1), force[:, -1]], dim=1)


class ProprioEncoder(nn.Module):
    """Standardisation, then the MLP 8-32-64-128 and a linear layer to 2 x z_dim.

    The inputs are standardised with the training set's per-dimension ``mean`` and ``std``
    (buffers, saved with the weights; set by ``set_stats``): raw velocities are ~0.05 m/s and
    positions ~0.5 m, and unscaled they reach the latent too weakly for the flow head to use them.
    """

    def __init__(self, z_dim: int, in_dim: int = 8) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.net = nn.Sequential(nn.Linear(in_dim, 32), nn.LeakyReLU(LEAK), nn.Linear(32, 64),
                                 nn.LeakyReLU(LEAK), nn.Linear(64, 128), nn.LeakyReLU(LEAK),
                                 nn.Linear(128, 2 * z_dim))

    @torch.no_grad()
    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-dimension statistics (in_dim,) of the training inputs; std is floored at 1e-3."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def forward(self, proprio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net((proprio - self.mean) / self.std).chunk(2, dim=1)
