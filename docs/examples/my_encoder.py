"""A user's own encoder network, in a module outside the mmrep package (docs/extending.md, example c).

mmrep builds it as ``TinyEncoder(cfg)`` when the model config names it
(``model.encoder_target=my_encoder.TinyEncoder``); the encoder file records the class, so
``load_encoder`` rebuilds it wherever this module is importable.

The contract (``mmrep.models.network``): keep ``cfg``; ``forward(batch, modalities=None, present=None)``
maps model inputs (``rgb`` (B, 3, S, S) uint8, ``proprio`` (B, 8) PROPRIO8, ...) to z (B, cfg.z_dim).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TinyEncoder(nn.Module):
    """RGB pooled to 8x8 and PROPRIO8, each through a linear layer, summed: z (B, z_dim)."""

    def __init__(self, cfg, hidden: int = 64) -> None:
        super().__init__()
        self.cfg = cfg
        self.parts = nn.ModuleDict()
        if "rgb" in cfg.modalities:
            self.parts["rgb"] = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, hidden), nn.ReLU())
        if "proprio" in cfg.modalities:
            self.parts["proprio"] = nn.Sequential(nn.Linear(8, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, cfg.z_dim)

    def forward(self, batch: dict[str, torch.Tensor], modalities: list[str] | None = None,
                present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        modalities = [m for m in self.parts if m in batch] if modalities is None else modalities
        h = 0.0
        for m in modalities:
            x = batch[m].float()
            if m == "rgb":
                x = F.adaptive_avg_pool2d(x / 255.0, 8)
            part = self.parts[m](x)
            if present and m in present:  # a modality left out of a sample adds nothing to it
                part = part * present[m].to(part.dtype)[:, None]
            h = h + part
        return self.out(h if torch.is_tensor(h) else torch.zeros(1, self.out.in_features))
