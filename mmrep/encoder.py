"""A trained encoder as a standalone module: ``load_encoder(path).encode(obs) -> z``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmrep.data.sources import proprio8_from_sim
from mmrep.models import ModelConfig, MultimodalModel


class Encoder(nn.Module):
    """Encoders and fusion of a trained ``MultimodalModel`` (no heads).

    ``encode(obs)`` takes the env's observation dict, single (``rgb`` (H, W, 3) uint8, ``depth``
    (H, W, 1), ``force`` (n, 6), ``proprio`` (13,) or (8,)) or batched (a leading batch axis), numpy
    or torch, and returns z, (z_dim,) or (B, z_dim) float32: the posterior mean. It converts
    layouts (HWC to CHW) and the env's 13-D proprioception to the model's 8-D itself.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        model = MultimodalModel(cfg)
        self.rgb_encoder = model.rgb_encoder
        self.depth_encoder = model.depth_encoder
        self.force_encoder = model.force_encoder
        self.proprio_encoder = model.proprio_encoder
        self.fuse = model.fuse
        self._model = [model]  # not a submodule: its heads are not part of the encoder

    @property
    def z_dim(self) -> int:
        return self.cfg.z_dim

    def _batch(self, obs: dict[str, Any]) -> tuple[dict[str, torch.Tensor], bool]:
        device = next(self.parameters()).device
        rgb = np.asarray(obs["rgb"]) if "rgb" in obs else None
        single = np.ndim(obs["proprio"]) == 1
        out: dict[str, torch.Tensor] = {}

        def tensor(x, dtype=torch.float32):
            t = torch.as_tensor(np.asarray(x)) if not torch.is_tensor(x) else x
            t = t.to(device=device, dtype=dtype)
            return t.unsqueeze(0) if single else t

        if self.cfg.rgb:
            out["rgb"] = tensor(rgb, torch.uint8).permute(0, 3, 1, 2).contiguous()
        if self.cfg.depth:
            out["depth"] = tensor(obs["depth"]).permute(0, 3, 1, 2).contiguous()
        if self.cfg.force:
            out["force"] = tensor(obs["force"])
        if self.cfg.proprio:
            p = np.asarray(obs["proprio"].cpu() if torch.is_tensor(obs["proprio"]) else obs["proprio"])
            p = np.atleast_2d(p)
            p8 = proprio8_from_sim(p) if p.shape[-1] == 13 else p[..., :8]
            out["proprio"] = torch.as_tensor(p8, dtype=torch.float32, device=device)
        return out, single

    @torch.no_grad()
    def encode(self, obs: dict[str, Any]) -> torch.Tensor:
        batch, single = self._batch(obs)
        z = self._model[0].encode(batch)
        return z[0] if single else z

    def forward(self, obs: dict[str, Any]) -> torch.Tensor:
        return self.encode(obs)

    def to(self, *args, **kwargs):  # keep the hidden full model on the same device
        self._model[0].to(*args, **kwargs)
        return super().to(*args, **kwargs)


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> Encoder:
    """Load an encoder exported by ``mmrep train`` (``encoder.pt``), safely (``weights_only=True``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"encoder file {path} does not exist")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != "mmrep-encoder-1":
        raise ValueError(f"{path} is not an mmrep encoder export")
    cfg = ModelConfig.from_dict(json.loads(blob["config"]))
    enc = Encoder(cfg)
    missing, unexpected = enc._model[0].load_state_dict(blob["state_dict"], strict=False)
    wanted = [k for k in missing if k.startswith(("rgb_encoder.", "depth_encoder.", "force_encoder.",
                                                  "proprio_encoder.", "fuse."))]
    if wanted or unexpected:
        raise ValueError(f"{path}: weights do not match the config (missing {wanted[:3]}, unexpected "
                         f"{unexpected[:3]})")
    return enc.to(device).eval()
