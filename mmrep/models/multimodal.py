"""The multimodal representation model: encoders, fusion, action conditioning, self-supervised heads.

``MultimodalModel(cfg)(batch)`` takes a batch from ``mmrep.data.MultimodalDataset`` and returns the
latent and every head's prediction; ``mmrep.models.losses`` turns them into the weighted loss.

Fusion (``cfg.fusion``): "poe", a product of the per-modality Gaussian experts and a N(0, I) prior
expert, sampled with the reparameterisation trick while training (the mean otherwise), with a KL
to N(0, I); or "concat", the deterministic option (ICRA variant): the experts' means concatenated
and mapped by an MLP to z, no KL.

Heads, on the action-conditioned feature h = MLP([z, MLP(action)]) (128):
    flow      decoder with skips from the RGB encoder, predicted at 32x32 (pixels of the 128 image),
              multiplied by a predicted mask, upsampled to 128x128
    contact   next-step contact logit
    ee        next end-effector pose (x, y, z in m, yaw in rad)
and on z: alignment (is this F/T and proprioception from the same moment as the image?) logit. With
the product of experts the alignment head reads the posterior mean by default
(``alignment_input="mean"``; the reference code feeds it the sampled z, ``"sample"``): on a sampled z
the head stayed at chance for 1000 steps, on the mean it reached 0.80 (README, "Quality").
Every modality and head can be switched off in the config; the ablations are configs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mmrep.models.encoders import LEAK, ForceEncoder, ImageEncoder, ProprioEncoder

MODALITIES = ("rgb", "depth", "force", "proprio")
HEADS = ("flow", "contact", "alignment", "ee")


@dataclass
class ModelConfig:
    """Architecture, switches and loss weights (reference values from the paper's code)."""

    z_dim: int = 128
    image_size: int = 128
    action_dim: int = 4
    rgb: bool = True
    depth: bool = True
    force: bool = True
    proprio: bool = True
    fusion: str = "poe"  # "poe" | "concat"
    flow: bool = True
    contact: bool = True
    alignment: bool = True
    ee: bool = True
    w_flow: float = 10.0  # endpoint error
    w_flow_mask: float = 1.0
    w_contact: float = 1.0
    w_alignment: float = 0.5
    w_ee: float = 1.0
    w_kl: float = 0.05
    alignment_input: str = "mean"  # "mean" | "sample": what the alignment head sees of the PoE posterior

    def validate(self) -> None:
        if self.fusion not in ("poe", "concat"):
            raise ValueError(f"model.fusion must be 'poe' or 'concat', got {self.fusion!r}")
        if self.alignment_input not in ("sample", "mean"):
            raise ValueError(f"model.alignment_input must be 'sample' or 'mean', got {self.alignment_input!r}")
        if not any(getattr(self, m) for m in MODALITIES):
            raise ValueError("model: at least one of rgb, depth, force, proprio must be on")
        if not any(getattr(self, h) for h in HEADS):
            raise ValueError("model: at least one of the heads flow, contact, alignment, ee must be on")
        if self.flow and not self.rgb:
            raise ValueError("model.flow needs model.rgb (the flow decoder uses the RGB encoder's skips)")
        if self.alignment and not ((self.force or self.proprio) and (self.rgb or self.depth)):
            raise ValueError("model.alignment needs an image (rgb or depth) and force or proprio: it "
                             "asks whether they come from the same moment")
        if self.z_dim < 1 or self.image_size < 64:
            raise ValueError("model.z_dim must be >= 1 and model.image_size >= 64")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model option(s) {unknown}; valid: {sorted(known)}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def modalities(self) -> list[str]:
        return [m for m in MODALITIES if getattr(self, m)]


def mlp(*sizes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.LeakyReLU(LEAK)]
    return nn.Sequential(*layers)


def product_of_experts(mus: list[torch.Tensor], logvars: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian product of the experts and a N(0, I) prior expert: precision-weighted mean."""
    mu = torch.stack([torch.zeros_like(mus[0])] + mus)
    logvar = torch.stack([torch.zeros_like(logvars[0])] + logvars)
    precision = torch.exp(-logvar.float())
    var = 1.0 / precision.sum(0)
    return (mu.float() * precision).sum(0) * var, torch.log(var)


class FlowDecoder(nn.Module):
    """From h (128) and the RGB encoder's feature maps to flow (B, 2, S, S) in pixels and a mask
    logit (B, 1, S, S): transposed convolutions with skips up to S/4, flow x sigmoid(mask), then
    bilinear upsampling by 4."""

    def __init__(self, image_size: int, h_dim: int = 128) -> None:
        super().__init__()
        self.side = image_size // 64  # the encoder's last feature map (2 at 128)
        self.fc = nn.Linear(h_dim, 128 * self.side * self.side)
        # skip channels of the encoder at S/64, S/32, S/16, S/8, S/4: 128, 128, 64, 64, 32
        self.up = nn.ModuleList([
            nn.ConvTranspose2d(128 + 128, 128, 4, stride=2, padding=1),  # S/64 -> S/32
            nn.ConvTranspose2d(128 + 128, 64, 4, stride=2, padding=1),  # S/32 -> S/16
            nn.ConvTranspose2d(64 + 64, 64, 4, stride=2, padding=1),  # S/16 -> S/8
            nn.ConvTranspose2d(64 + 64, 32, 4, stride=2, padding=1),  # S/8 -> S/4
        ])
        self.out = nn.Conv2d(32 + 32, 3, 3, padding=1)

    def forward(self, h: torch.Tensor, skips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.fc(h).view(-1, 128, self.side, self.side)
        for up, skip in zip(self.up, (skips[5], skips[4], skips[3], skips[2])):
            x = F.leaky_relu(up(torch.cat([x, skip], dim=1)), LEAK)
        out = self.out(torch.cat([x, skips[1]], dim=1))
        flow, mask_logit = out[:, :2], out[:, 2:]
        flow = flow * torch.sigmoid(mask_logit)
        flow = F.interpolate(flow, scale_factor=4, mode="bilinear", align_corners=False)
        mask_logit = F.interpolate(mask_logit, scale_factor=4, mode="bilinear", align_corners=False)
        return flow, mask_logit


class MultimodalModel(nn.Module):
    """The paper's multimodal representation, configurable by ``ModelConfig``."""

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ModelConfig()
        cfg.validate()
        z = cfg.z_dim
        self.rgb_encoder = ImageEncoder(3, z, cfg.image_size, scale=1 / 255) if cfg.rgb else None
        self.depth_encoder = ImageEncoder(1, z, cfg.image_size) if cfg.depth else None
        self.force_encoder = ForceEncoder(z) if cfg.force else None
        self.proprio_encoder = ProprioEncoder(z) if cfg.proprio else None
        self.fuse = mlp(z * len(cfg.modalities), 2 * z, z)[:-1] if cfg.fusion == "concat" else None
        self.action_encoder = mlp(cfg.action_dim, 32, 32)
        self.feature = mlp(z + 32, 128, 128)
        self.flow_decoder = FlowDecoder(cfg.image_size) if cfg.flow else None
        self.contact_head = nn.Linear(128, 1) if cfg.contact else None
        self.ee_head = nn.Linear(128, 4) if cfg.ee else None
        self.alignment_head = nn.Sequential(mlp(z, 128), nn.Linear(128, 1)) if cfg.alignment else None

    # ------------------------------------------------------------------------------------ encoding
    def experts(self, batch: dict[str, torch.Tensor], force_key: str = "force",
                proprio_key: str = "proprio", image_experts=None):
        """Per-modality (mu, logvar) and the RGB skips. ``image_experts`` reuses the image part."""
        mus, logvars, skips = [], [], None
        if image_experts is not None:
            mus, logvars, skips = (list(x) if isinstance(x, list) else x for x in image_experts)
        else:
            if self.rgb_encoder is not None:
                mu, lv, skips = self.rgb_encoder(batch["rgb"])
                mus.append(mu)
                logvars.append(lv)
            if self.depth_encoder is not None:
                mu, lv, _ = self.depth_encoder(batch["depth"])
                mus.append(mu)
                logvars.append(lv)
        image_part = (list(mus), list(logvars), skips)
        if self.force_encoder is not None:
            mu, lv = self.force_encoder(batch[force_key])
            mus.append(mu)
            logvars.append(lv)
        if self.proprio_encoder is not None:
            mu, lv = self.proprio_encoder(batch[proprio_key])
            mus.append(mu)
            logvars.append(lv)
        return mus, logvars, skips, image_part

    def fuse_experts(self, mus, logvars, sample: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(z, mu, logvar); mu and logvar are None for the deterministic fusion."""
        if self.fuse is not None:
            return self.fuse(torch.cat(mus, dim=1)), None, None
        mu, logvar = product_of_experts(mus, logvars)
        if sample:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        return z, mu, logvar

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The representation z (B, z_dim) of a batch of observations (mean of the posterior)."""
        mus, logvars, _, _ = self.experts(batch)
        return self.fuse_experts(mus, logvars, sample=False)[0]

    # ------------------------------------------------------------------------------------- forward
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mus, logvars, skips, image_part = self.experts(batch)
        z, mu, logvar = self.fuse_experts(mus, logvars, sample=self.training)
        out: dict[str, torch.Tensor] = {"z": z}
        if mu is not None:
            out["mu"], out["logvar"] = mu, logvar
        h = self.feature(torch.cat([z, self.action_encoder(batch["action"])], dim=1))
        if self.flow_decoder is not None:
            out["flow"], out["flow_mask_logit"] = self.flow_decoder(h, skips)
        if self.contact_head is not None:
            out["contact_logit"] = self.contact_head(h)
        if self.ee_head is not None:
            out["ee"] = self.ee_head(h)
        if self.alignment_head is not None:
            # Negatives reuse the image experts: only F/T, proprioception and fusion run again.
            n_mus, n_logvars, _, _ = self.experts(batch, "force_neg", "proprio_neg", image_experts=image_part)
            z_neg, mu_neg, _ = self.fuse_experts(n_mus, n_logvars, sample=self.training)
            on_mean = self.cfg.alignment_input == "mean" and mu is not None
            out["align_logit"] = self.alignment_head(mu if on_mean else z)
            out["align_logit_neg"] = self.alignment_head(mu_neg if on_mean else z_neg)
        return out
