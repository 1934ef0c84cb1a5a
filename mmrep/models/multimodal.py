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
and on z: alignment (is this F/T and proprioception from the same moment as the image?) logit, and
(``cfg.w_insertion`` > 0) insertion: the offset from the tip to where the peg will go in (x, y, in
units of ``INSERTION_SCALE``), a hindsight label (``mmrep.data.hindsight``); with
``cfg.w_insertion_touch`` > 0 the same head also reads the product of the non-camera experts alone
(``insertion_touch``), so touch carries the hole's direction when the camera is left out. With
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
from mmrep.models.experts import LEAK, ForceEncoder, ImageEncoder, ProprioEncoder  # noqa: F401  (re-exported)
from mmrep.models.modalities import DEFAULT_IMAGE_SIZE, build_modality_encoder, camera_modalities
from mmrep.models.network import build_network


def mlp(*sizes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.LeakyReLU(LEAK)]
    return nn.Sequential(*layers)


def product_of_experts(mus: list[torch.Tensor], logvars: list[torch.Tensor],
                       present: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian product of the experts (each (B, z)) and a N(0, I) prior expert: precision-weighted
    mean, and the log-variance. ``present`` (one (B,) 0/1 tensor per expert) leaves an expert out of a
    sample's product; with every expert out, z is the prior's N(0, I).

    Finite for any finite input: the experts' log-variances are linear in their inputs, and an input far
    outside training (a proprioception vector of zeros gives -763) drives one below -88, where
    exp(-logvar) overflows float32 and the direct product is inf / inf, or inf x 0 for an expert left
    out: z was NaN from finite inputs. Those entries are computed in log space instead (the surest
    expert dominates); every entry the direct product gives finite stays bit for bit as it was."""
    if not mus:
        raise ValueError("product_of_experts needs at least one expert")
    mu = torch.stack([torch.zeros_like(mus[0])] + mus).float()
    logvar = torch.stack([torch.zeros_like(logvars[0])] + logvars).float()
    precision = torch.exp(-logvar)
    keep = None
    if present is not None:
        keep = torch.stack([torch.ones_like(present[0])] + list(present)).float()[:, :, None].expand_as(precision)
        precision = precision * keep
    var = 1.0 / precision.sum(0)
    out_mu, out_logvar = (mu * precision).sum(0) * var, torch.log(var)
    # Always computed, never branched on: the ONNX and TorchScript exports trace this function, and a
    # data-dependent branch would be traced as "not taken".
    bad = ~(torch.isfinite(out_mu) & torch.isfinite(out_logvar))
    log_precision = -logvar if keep is None else (-logvar).masked_fill(keep == 0, float("-inf"))
    top = log_precision.max(0).values  # finite: the prior's 0 is always there
    weight = torch.exp(log_precision - top)  # in [0, 1]
    total = weight.sum(0)
    return (torch.where(bad, (mu * weight).sum(0) / total, out_mu),
            torch.where(bad, -(top + torch.log(total)), out_logvar))


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


INSERTION_SCALE = 0.01  # m per unit of the insertion head's output (cm: offsets are up to ~10)


class MultimodalEncoder(nn.Module):
    """The per-modality encoders (an ``nn.ModuleDict`` keyed by modality, as robomimic keys its
    observation encoders) and their fusion: model inputs -> z.

    Inputs (a batch, keys of the enabled modalities): ``rgb`` (B, 3, S, S) uint8, ``depth``
    (B, 1, S, S) float32 m, ``force`` (B, n, 6) float32 N / N m, ``proprio`` (B, 8) PROPRIO8.

    A modality can be absent from a sample (``present[m]``, (B,) 0/1): the product of experts leaves
    its expert out of that sample's product (the N(0, I) prior keeps z defined when every expert is
    out); the concatenation puts a "missing" vector (z_dim) in its place: learned (``missing[m]``)
    when the model is trained with ``model.modality_dropout`` > 0, zeros otherwise.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        z = cfg.z_dim
        # one expert per modality, built by the modality registry (mmrep.modalities)
        self.encoders = nn.ModuleDict({m: build_modality_encoder(m, cfg) for m in cfg.modalities})
        self.camera = camera_modalities(cfg.modalities)
        self.fuse = mlp(z * len(cfg.modalities), 2 * z, z)[:-1] if cfg.fusion == "concat" else None
        # Learned only when modalities are dropped in training; otherwise a fixed zero vector (and
        # the weights stay those of models trained before modality dropout existed).
        self.missing = (nn.ParameterDict({m: nn.Parameter(torch.zeros(z)) for m in cfg.modalities})
                        if cfg.fusion == "concat" and cfg.modality_dropout > 0 else None)

    def image_experts(self, batch: dict[str, torch.Tensor], modalities=None):
        """(mus, logvars, rgb skips, names) of the camera modalities (rgb, depth) in ``modalities``."""
        mus, logvars, skips, names = [], [], None, []
        for m in self.camera:
            if m in self.encoders and (modalities is None or m in modalities):
                mu, lv, maps = self.encoders[m](batch[m])
                mus.append(mu)
                logvars.append(lv)
                names.append(m)
                if m == "rgb":
                    skips = maps
        return mus, logvars, skips, names

    def state_experts(self, batch: dict[str, torch.Tensor], force_key: str = "force",
                      proprio_key: str = "proprio", modalities=None):
        """(mus, logvars, names) of the modalities that are not cameras (F/T, proprioception, ...), read
        from ``force_key`` / ``proprio_key`` (another modality m from ``m`` + the same suffix, e.g.
        ``_neg``, when the batch has it)."""
        mus, logvars, names = [], [], []
        suffix = force_key[len("force"):] if force_key.startswith("force") else ""
        for m in self.encoders:
            if m in self.camera:
                continue
            key = {"force": force_key, "proprio": proprio_key}.get(m, m + suffix if m + suffix in batch else m)
            if modalities is None or m in modalities:
                mu, lv = self.encoders[m](batch[key])
                mus.append(mu)
                logvars.append(lv)
                names.append(m)
        return mus, logvars, names

    def fuse_experts(self, mus, logvars, sample: bool, names: list[str] | None = None,
                     present: dict[str, torch.Tensor] | None = None, batch_size: int | None = None):
        """(z, mu, logvar) from the experts of ``names`` (default: every modality, in order); mu and
        logvar are None for the deterministic fusion. ``present`` (modality -> (B,) 0/1) marks absent
        modalities per sample; a modality missing from ``names`` is absent in every sample."""
        names = list(self.encoders) if names is None else names
        present = present or {}
        if self.fuse is not None:
            b = mus[0].shape[0] if mus else batch_size
            parts = []
            for m in self.encoders:
                missing = self.missing_vector(m).to(mus[0].dtype if mus else torch.float32).expand(b, -1)
                if m not in names:
                    parts.append(missing)
                    continue
                mu = mus[names.index(m)]
                if m in present:
                    keep = present[m].to(mu.dtype)[:, None]
                    mu = mu * keep + missing * (1 - keep)
                parts.append(mu)
            return self.fuse(torch.cat(parts, dim=1)), None, None
        if not mus:  # nothing observed: the prior
            zeros = torch.zeros(batch_size, self.cfg.z_dim, device=self.missing_device())
            return zeros, zeros, zeros
        keep = None
        if any(m in present for m in names):
            ones = torch.ones(mus[0].shape[0], device=mus[0].device)
            keep = [present.get(m, ones) for m in names]
        mu, logvar = product_of_experts(mus, logvars, keep)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return z, mu, logvar

    def missing_device(self) -> torch.device:
        return next(self.parameters()).device

    def missing_vector(self, modality: str) -> torch.Tensor:
        """What the concatenation puts in place of an absent modality (z_dim,): learned with modality
        dropout, zeros otherwise."""
        if self.missing is not None:
            return self.missing[modality]
        return torch.zeros(self.cfg.z_dim, device=self.missing_device())

    def forward(self, batch: dict[str, torch.Tensor], modalities: list[str] | None = None,
                present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """z (B, z_dim), the posterior mean. ``modalities`` (default: those in ``batch``) and
        ``present`` (modality -> (B,) 0/1 per sample) leave modalities out (see the class doc)."""
        if modalities is not None:
            unknown = sorted(set(modalities) - set(self.encoders))
            if unknown:
                raise ValueError(f"modalities {unknown} are not in this encoder ({list(self.encoders)})")
        else:
            modalities = [m for m in self.encoders if m in batch]
        if not modalities and not batch:
            raise ValueError("the batch holds none of this encoder's modalities and no batch size")
        b = next(iter(batch.values())).shape[0] if batch else None
        mus, logvars, _, names = self.image_experts(batch, modalities)
        state_mus, state_logvars, state_names = self.state_experts(batch, modalities=modalities)
        return self.fuse_experts(mus + state_mus, logvars + state_logvars, sample=False,
                                 names=names + state_names, present=present, batch_size=b)[0]

    def expert_logvars(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each present modality's mean expert log-variance (B,): its own estimate of how unsure it
        is; the product of experts down-weights an expert by exp(-logvar)."""
        given = [m for m in self.encoders if m in batch]
        _, logvars, _, names = self.image_experts(batch, given)
        _, s_logvars, s_names = self.state_experts(batch, modalities=given)
        return {m: lv.float().mean(1) for m, lv in zip(names + s_names, logvars + s_logvars)}


def draw_presence(modalities: list[str], batch_size: int, q: float, device) -> dict[str, torch.Tensor]:
    """Modality dropout: for each modality, (B,) 1 (kept) or 0 (dropped with probability ``q``)."""
    return {m: (torch.rand(batch_size, device=device) >= q).float() for m in modalities}


class MultimodalModel(nn.Module):
    """The paper's multimodal representation, configurable by ``ModelConfig``: ``encoder``
    (a ``MultimodalEncoder``, what is exported) and the action-conditioned heads.

    With ``cfg.modality_dropout`` = q > 0, training drops each modality of each sample with
    probability q (``draw_presence``); a batch may also carry ``present_<modality>`` (B,) 0/1 to
    leave modalities out explicitly (evaluation). The RGB skips of the flow decoder are zeroed where
    RGB is absent, and the alignment loss only counts samples with an image and F/T or proprioception.
    """

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ModelConfig()
        cfg.validate()
        z = cfg.z_dim
        self.encoder = build_network(cfg)  # MultimodalEncoder, or the network cfg.encoder_target names
        self.experts = isinstance(self.encoder, MultimodalEncoder)  # per-modality Gaussian experts to fuse here
        if not self.experts:  # heads that need per-modality features say so
            if cfg.flow and not hasattr(self.encoder, "feature_maps"):
                raise ValueError(f"model.flow needs the RGB feature maps (a feature_maps(batch) method) that "
                                 f"{type(self.encoder).__name__} lacks; set model.flow=false")
            if cfg.alignment and cfg.alignment_input == "experts":
                raise ValueError("model.alignment_input='experts' needs a MultimodalEncoder's experts")
        self.action_encoder = mlp(cfg.action_dim, 32, 32)
        self.feature = mlp(z + 32, 128, 128)
        self.flow_decoder = FlowDecoder(cfg.image_size or DEFAULT_IMAGE_SIZE) if cfg.flow else None
        self.contact_head = nn.Linear(128, 1) if cfg.contact else None
        self.ee_head = nn.Linear(128, 4) if cfg.ee else None
        align_in = z * len(cfg.modalities) if cfg.alignment_input == "experts" else z
        self.alignment_head = nn.Sequential(mlp(align_in, 128), nn.Linear(128, 1)) if cfg.alignment else None
        self.insertion_head = nn.Sequential(mlp(z, 128), nn.Linear(128, 2)) if cfg.w_insertion > 0 else None

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The representation z (B, z_dim) of a batch of model inputs (mean of the posterior)."""
        return self.encoder(batch)

    def presence(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-sample presence (B,) of each modality: the batch's ``present_<m>``, times modality
        dropout while training."""
        b = batch["action"].shape[0]
        present = {m: batch[f"present_{m}"].float() for m in self.cfg.modalities if f"present_{m}" in batch}
        if self.training and self.cfg.modality_dropout > 0:
            drawn = draw_presence(list(self.cfg.modalities), b, self.cfg.modality_dropout, batch["action"].device)
            present = {m: drawn[m] * present[m] if m in present else drawn[m] for m in drawn}
        return present

    def forward(self, batch: dict[str, torch.Tensor], image_experts: tuple | None = None) -> dict[str, torch.Tensor]:
        """Every head's prediction for a batch. ``image_experts``: the result of
        ``self.encoder.image_experts(batch)`` when already computed for the same images (evaluation
        reuses it across F/T and proprioception perturbations: the image encoders are most of the cost)."""
        enc = self.encoder
        present = self.presence(batch)
        if not self.experts:
            return self._forward_network(batch, present)
        image_mus, image_logvars, skips, image_names = image_experts or enc.image_experts(batch)
        state_mus, state_logvars, state_names = enc.state_experts(batch)
        names = image_names + state_names
        z, mu, logvar = enc.fuse_experts(image_mus + state_mus, image_logvars + state_logvars,
                                         sample=self.training, names=names, present=present)
        out: dict[str, torch.Tensor] = {"z": z}
        if mu is not None:
            out["mu"], out["logvar"] = mu, logvar
            for m, lv in zip(names, image_logvars + state_logvars):  # the reliability signal (evaluate)
                out[f"expert_logvar/{m}"] = lv.detach().float().mean(1)
        self._heads(out, batch, z, skips, present)
        if self.insertion_head is not None and self.cfg.w_insertion_touch > 0 and state_mus:
            # the insertion head on the touch-only posterior (no camera expert): the same head, so the
            # touch experts must place the hole in the same z the camera does
            z_touch = enc.fuse_experts(state_mus, state_logvars, sample=self.training, names=state_names,
                                       present=present)[0]
            out["insertion_touch"] = self.insertion_head(z_touch)
        if self.alignment_head is not None:
            # Negatives reuse the image experts: only F/T, proprioception and fusion run again.
            neg_mus, neg_logvars, _ = enc.state_experts(batch, "force_neg", "proprio_neg")
            z_neg, mu_neg, _ = enc.fuse_experts(image_mus + neg_mus, image_logvars + neg_logvars,
                                                sample=self.training, names=names, present=present)
            mode = self.cfg.alignment_input
            if mode == "experts":
                pos = _experts_input(names, image_mus + state_mus, present)
                neg = _experts_input(names, image_mus + neg_mus, present)
            elif mode == "mean" and mu is not None:
                pos, neg = mu, mu_neg
            else:
                pos, neg = z, z_neg
            out["align_logit"] = self.alignment_head(pos)
            out["align_logit_neg"] = self.alignment_head(neg)
            if present:  # the question has no answer without an image or without F/T and proprio
                ones = torch.ones_like(out["align_logit"][:, 0])

                def any_of(group: tuple[str, ...]) -> torch.Tensor:
                    return torch.stack([present.get(m, ones) for m in group if m in names]).amax(0)

                sensed = tuple(m for m in names if m not in enc.camera)
                out["align_weight"] = (any_of(enc.camera) * any_of(sensed))[:, None]
        return out

    def _heads(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], z: torch.Tensor,
               skips: list[torch.Tensor] | None, present: dict[str, torch.Tensor]) -> None:
        """The action-conditioned heads (flow, contact, ee) and the insertion head, into ``out``."""
        h = self.feature(torch.cat([z, self.action_encoder(batch["action"])], dim=1))
        if self.flow_decoder is not None:
            if "rgb" in present:  # an absent camera passes nothing to the decoder either
                keep = present["rgb"][:, None, None, None]
                skips = [s * keep.to(s.dtype) for s in skips]
                if self.cfg.flow_needs_rgb:
                    out["flow_weight"] = present["rgb"]
            out["flow"], out["flow_mask_logit"] = self.flow_decoder(h, skips)
        if self.contact_head is not None:
            out["contact_logit"] = self.contact_head(h)
        if self.ee_head is not None:
            out["ee"] = self.ee_head(h)
        if self.insertion_head is not None:  # on z, not h: where the hole is does not depend on the action
            out["insertion"] = self.insertion_head(z)

    def _forward_network(self, batch: dict[str, torch.Tensor],
                         present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every head's prediction with an encoder network that is not a ``MultimodalEncoder``: z is
        its forward (deterministic, no KL); the alignment negative is its z of the batch with the
        other moment's F/T and proprioception; the flow head reads its ``feature_maps``."""
        enc = self.encoder
        z = enc(batch, present=present or None)
        out: dict[str, torch.Tensor] = {"z": z}
        self._heads(out, batch, z, enc.feature_maps(batch) if self.flow_decoder is not None else None, present)
        if self.alignment_head is not None:
            negative = {**batch, **{m: batch[f"{m}_neg"] for m in self.cfg.modalities if f"{m}_neg" in batch}}
            out["align_logit"] = self.alignment_head(z)
            out["align_logit_neg"] = self.alignment_head(enc(negative, present=present or None))
        return out


def _experts_input(names: list[str], mus: list[torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
    """The experts' means side by side (absent ones zeroed): what the alignment head compares."""
    parts = [mu * present[m].to(mu.dtype)[:, None] if m in present else mu for m, mu in zip(names, mus)]
    return torch.cat(parts, dim=1)
