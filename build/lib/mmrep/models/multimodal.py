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

import torch
from torch import nn
from torch.nn import functional as F

from mmrep.config import ModelConfig
from mmrep.models.encoders import LEAK, ForceEncoder, ImageEncoder, ProprioEncoder


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


DEFAULT_IMAGE_SIZE = 128  # px, when ``ModelConfig.image_size`` is left to the data and no data is at hand


class MultimodalEncoder(nn.Module):
    """The per-modality encoders (an ``nn.ModuleDict`` keyed by modality, as robomimic keys its
    observation encoders) and their fusion: model inputs -> z.

    Inputs (a batch, keys of the enabled modalities): ``rgb`` (B, 3, S, S) uint8, ``depth``
    (B, 1, S, S) float32 m, ``force`` (B, n, 6) float32 N / N m, ``proprio`` (B, 8) PROPRIO8.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        z, size = cfg.z_dim, cfg.image_size or DEFAULT_IMAGE_SIZE
        builders = {"rgb": lambda: ImageEncoder(3, z, size, scale=1 / 255), "depth": lambda: ImageEncoder(1, z, size),
                    "force": lambda: ForceEncoder(z), "proprio": lambda: ProprioEncoder(z)}
        self.encoders = nn.ModuleDict({m: builders[m]() for m in cfg.modalities})
        self.fuse = mlp(z * len(cfg.modalities), 2 * z, z)[:-1] if cfg.fusion == "concat" else None

    def image_experts(self, batch: dict[str, torch.Tensor], modalities=None):
        """(mus, logvars, rgb skips) of the image modalities (rgb, depth) present in ``modalities``."""
        mus, logvars, skips = [], [], None
        for m in ("rgb", "depth"):
            if m in self.encoders and (modalities is None or m in modalities):
                mu, lv, maps = self.encoders[m](batch[m])
                mus.append(mu)
                logvars.append(lv)
                if m == "rgb":
                    skips = maps
        return mus, logvars, skips

    def state_experts(self, batch: dict[str, torch.Tensor], force_key: str = "force",
                      proprio_key: str = "proprio", modalities=None):
        """(mus, logvars) of F/T and proprioception, read from ``force_key`` / ``proprio_key``."""
        mus, logvars = [], []
        for m, key in (("force", force_key), ("proprio", proprio_key)):
            if m in self.encoders and (modalities is None or m in modalities):
                mu, lv = self.encoders[m](batch[key])
                mus.append(mu)
                logvars.append(lv)
        return mus, logvars

    def fuse_experts(self, mus, logvars, sample: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(z, mu, logvar); mu and logvar are None for the deterministic fusion."""
        if self.fuse is not None:
            return self.fuse(torch.cat(mus, dim=1)), None, None
        mu, logvar = product_of_experts(mus, logvars)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return z, mu, logvar

    def forward(self, batch: dict[str, torch.Tensor], modalities: list[str] | None = None) -> torch.Tensor:
        """z (B, z_dim), the posterior mean. ``modalities`` leaves the others out (product of experts
        only: the concatenation needs every modality it was trained with)."""
        if modalities is not None:
            unknown = sorted(set(modalities) - set(self.encoders))
            if unknown:
                raise ValueError(f"modalities {unknown} are not in this encoder ({list(self.encoders)})")
            if self.fuse is not None and set(modalities) != set(self.encoders):
                raise ValueError("fusion 'concat' cannot leave a modality out; only 'poe' can")
            if not modalities:
                raise ValueError("modalities must name at least one modality")
        mus, logvars, _ = self.image_experts(batch, modalities)
        state_mus, state_logvars = self.state_experts(batch, modalities=modalities)
        return self.fuse_experts(mus + state_mus, logvars + state_logvars, sample=False)[0]


class MultimodalModel(nn.Module):
    """The paper's multimodal representation, configurable by ``ModelConfig``: ``encoder``
    (a ``MultimodalEncoder``, what is exported) and the action-conditioned heads."""

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ModelConfig()
        cfg.validate()
        z = cfg.z_dim
        self.encoder = MultimodalEncoder(cfg)
        self.action_encoder = mlp(cfg.action_dim, 32, 32)
        self.feature = mlp(z + 32, 128, 128)
        self.flow_decoder = FlowDecoder(cfg.image_size or DEFAULT_IMAGE_SIZE) if cfg.flow else None
        self.contact_head = nn.Linear(128, 1) if cfg.contact else None
        self.ee_head = nn.Linear(128, 4) if cfg.ee else None
        self.alignment_head = nn.Sequential(mlp(z, 128), nn.Linear(128, 1)) if cfg.alignment else None

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The representation z (B, z_dim) of a batch of model inputs (mean of the posterior)."""
        return self.encoder(batch)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        enc = self.encoder
        image_mus, image_logvars, skips = enc.image_experts(batch)
        state_mus, state_logvars = enc.state_experts(batch)
        z, mu, logvar = enc.fuse_experts(image_mus + state_mus, image_logvars + state_logvars, sample=self.training)
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
            neg_mus, neg_logvars = enc.state_experts(batch, "force_neg", "proprio_neg")
            z_neg, mu_neg, _ = enc.fuse_experts(image_mus + neg_mus, image_logvars + neg_logvars,
                                                sample=self.training)
            on_mean = self.cfg.alignment_input == "mean" and mu is not None
            out["align_logit"] = self.alignment_head(mu if on_mean else z)
            out["align_logit_neg"] = self.alignment_head(mu_neg if on_mean else z_neg)
        return out
