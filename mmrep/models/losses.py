"""The self-supervised losses with the reference weights, and the validation metrics."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mmrep.config import ModelConfig
from mmrep.models.multimodal import INSERTION_SCALE


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dims, averaged over the batch."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()


def endpoint_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Euclidean flow error (pixels) over all pixels, or over ``mask`` > 0 (B, 1, H, W)."""
    d = pred.float() - target.float()
    # Written out, not torch.linalg.vector_norm(d, dim=1): on the CPU that reduction over the 2-long
    # channel axis took 0.32 s forward and backward for a batch of 64 at 128x128, this 0.04 s (half
    # of `mmrep evaluate`'s time went there). The clamp keeps the gradient finite at zero error.
    epe = (d[:, 0:1].square() + d[:, 1:2].square()).clamp_min(1e-12).sqrt()
    if mask is None:
        return epe.mean()
    return (epe * mask).sum() / mask.sum().clamp_min(1.0)


def insertion_l1(pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean absolute error (in ``INSERTION_SCALE`` units, per axis) of the predicted offset to the
    insertion point, over the samples whose episode has one. L1 rather than squared: millimetres
    matter near the hole, and a squared loss is dominated by the far, easy, large offsets."""
    known = batch["insertion_known"]
    err = (pred.float() - batch["insertion_offset"] / INSERTION_SCALE).abs()
    return (err * known).sum() / (2 * known.sum()).clamp_min(1.0)


def compute_losses(cfg: ModelConfig, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
                   kl_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Each enabled term (unweighted) and ``total`` (weighted sum, reference weights; the KL weight
    times ``kl_scale``, the training's warm-up)."""
    terms: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=out["z"].device)
    if "flow" in out:
        if "flow_weight" in out:  # model.flow_needs_rgb: only the samples with an image count
            w = out["flow_weight"].float()[:, None, None, None].expand_as(batch["flow_mask"])
            terms["flow_epe"] = endpoint_error(out["flow"], batch["flow"], w)
            bce = F.binary_cross_entropy_with_logits(out["flow_mask_logit"].float(), batch["flow_mask"],
                                                     reduction="none")
            terms["flow_mask"] = (bce * w).sum() / w.sum().clamp_min(1.0)
            moving = batch["flow_mask"] * w
        else:
            terms["flow_epe"] = endpoint_error(out["flow"], batch["flow"])
            terms["flow_mask"] = F.binary_cross_entropy_with_logits(out["flow_mask_logit"].float(), batch["flow_mask"])
            moving = batch["flow_mask"]
        total = total + cfg.w_flow * terms["flow_epe"] + cfg.w_flow_mask * terms["flow_mask"]
        if cfg.w_flow_moving > 0:
            terms["flow_epe_moving"] = endpoint_error(out["flow"], batch["flow"], moving)
            total = total + cfg.w_flow_moving * terms["flow_epe_moving"]
    if "contact_logit" in out:
        terms["contact"] = F.binary_cross_entropy_with_logits(out["contact_logit"].float(), batch["contact_next"])
        total = total + cfg.w_contact * terms["contact"]
    if "ee" in out:
        terms["ee"] = F.mse_loss(out["ee"].float(), batch["ee_next"])
        total = total + cfg.w_ee * terms["ee"]
    if "insertion" in out:
        terms["insertion"] = insertion_l1(out["insertion"], batch)
        total = total + cfg.w_insertion * terms["insertion"]
    if "insertion_touch" in out:
        terms["insertion_touch"] = insertion_l1(out["insertion_touch"], batch)
        total = total + cfg.w_insertion_touch * terms["insertion_touch"]
    if "align_logit" in out:
        logits = torch.cat([out["align_logit"], out["align_logit_neg"]]).float()
        labels = torch.cat([torch.ones_like(out["align_logit"]), torch.zeros_like(out["align_logit_neg"])])
        if "align_weight" in out:  # samples left without an image or without F/T and proprio
            w = torch.cat([out["align_weight"], out["align_weight"]]).float()
            bce = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
            terms["alignment"] = (bce * w).sum() / w.sum().clamp_min(1.0)
        else:
            terms["alignment"] = F.binary_cross_entropy_with_logits(logits, labels.float())
        total = total + cfg.w_alignment * terms["alignment"]
    if "mu" in out:
        terms["kl"] = kl_to_standard_normal(out["mu"].float(), out["logvar"].float())
        total = total + cfg.w_kl * kl_scale * terms["kl"]
    terms["total"] = total
    return terms



def f1_from_counts(tp: float, fp: float, fn: float) -> float:
    """F1 of the positive class from its counts; 1.0 when there is nothing to find and nothing was
    predicted (no positives, no false alarms)."""
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 1.0

class MetricAccumulator:
    """Validation metrics over many batches: contact accuracy and F1 (and two baselines: "always in
    contact", the best constant predictor, and "contact stays as it is now"), alignment accuracy,
    flow endpoint error on all pixels and on moving pixels (and that of predicting zero flow), EE MSE,
    KL, the insertion head's error (mm; and within 2 cm of the point), and the mean of every loss term."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}
        self.tp = self.fp = self.fn = 0.0
        self.tp0 = self.fp0 = self.fn0 = 0.0
        self.n_contact = self.n_contact_pos = 0.0

    def _add(self, key: str, value: float, n: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value * n
        self.counts[key] = self.counts.get(key, 0.0) + n

    @torch.no_grad()
    def update(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
               terms: dict[str, torch.Tensor]) -> None:
        n = float(batch["action"].shape[0])
        for key, value in terms.items():
            self._add(f"loss/{key}", float(value), n)
        if "contact_logit" in out:
            pred = out["contact_logit"].float() > 0
            true = batch["contact_next"] > 0.5
            self._add("contact_accuracy", float((pred == true).float().mean()), n)
            self.tp += float((pred & true).sum())
            self.fp += float((pred & ~true).sum())
            self.fn += float((~pred & true).sum())
            self.n_contact += float(true.numel())
            self.n_contact_pos += float(true.sum())
            if "contact_now" in batch:  # baseline: contact stays as it is now
                now = batch["contact_now"] > 0.5
                self.tp0 += float((now & true).sum())
                self.fp0 += float((now & ~true).sum())
                self.fn0 += float((~now & true).sum())
        if "align_logit" in out:
            correct = (out["align_logit"] > 0).float().mean() + (out["align_logit_neg"] <= 0).float().mean()
            self._add("alignment_accuracy", float(correct) / 2, n)
        if "flow" in out:
            moving = batch["flow_mask"]
            self._add("flow_epe_px", float(endpoint_error(out["flow"], batch["flow"])), n)
            m = float(moving.sum())
            if m > 0:
                self._add("flow_epe_moving_px", float(endpoint_error(out["flow"], batch["flow"], moving)), m)
                zero = torch.zeros_like(batch["flow"])
                self._add("flow_epe_moving_zero_px", float(endpoint_error(zero, batch["flow"], moving)), m)
        for key, name in (("insertion", "insertion"), ("insertion_touch", "insertion_touch")):
            if key not in out:
                continue
            known = batch["insertion_known"][:, 0] > 0.5
            if known.any():
                err = (out[key].float() * INSERTION_SCALE - batch["insertion_offset"]).norm(dim=1) * 1000
                self._add(f"{name}_error_mm", float(err[known].mean()), float(known.sum()))
                near = known & (batch["insertion_offset"].norm(dim=1) < 0.02)
                if near.any():
                    self._add(f"{name}_error_near_mm", float(err[near].mean()), float(near.sum()))
        if "ee" in out:
            self._add("ee_mse", float(F.mse_loss(out["ee"].float(), batch["ee_next"])), n)
        if "mu" in out:
            self._add("kl", float(kl_to_standard_normal(out["mu"].float(), out["logvar"].float())), n)

    def compute(self) -> dict[str, float]:
        result = {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k] > 0}
        if self.tp + self.fp + self.fn > 0:
            result["contact_f1"] = f1_from_counts(self.tp, self.fp, self.fn)
        if self.n_contact_pos > 0:  # baseline: always predict contact (the best constant predictor's F1)
            result["contact_f1_baseline_always"] = 2 * self.n_contact_pos / (self.n_contact_pos + self.n_contact)
        if self.tp0 + self.fp0 + self.fn0 > 0:
            result["contact_f1_baseline_stays"] = f1_from_counts(self.tp0, self.fp0, self.fn0)
        return result
