"""Each modality's reliability signal: is this input unlike the clean inputs its expert was trained on?

The signal is the expert's own uncertainty, its mean log-variance over z's dimensions (the product of
experts weighs an expert by exp(-logvar), so a high log-variance is already a down-weighted expert).
A modality is *flagged* when the signal exceeds a threshold: a high quantile (default the 99th) of its
values on clean held-out samples, so that about 1% of clean samples are flagged by construction.
Flagged experts can then be left out of the product altogether (``Encoder.encode(obs, reject=True)``).

The signal can fail the other way: an object close in front of the camera makes the image experts
*surer* than on any clean view (measured on the insertion encoder: the depth expert's median mean
log-variance falls from 9.5 before first contact to 1.75 behind the occluder, and no occluded step
exceeds an upper threshold; ``benchmarks/occluder_logvars.py``). Thresholds calibrated with
``low_quantile`` also flag a modality whose signal lies
under that low quantile of the clean values (``low``), so an input unlike the clean ones either way is
flagged. Files written without them flag one-sided, as before.

A sensor that has died fails a third way: its zeros look like free space, and its expert is as sure of
them as of any clean reading (on the touch setting's fused encoder the thresholds flag none of a dead
F/T sensor's steps; ``benchmarks/touch_fault_probe.py``). Given the inputs, ``flags`` also flags a
time series whose readings do not change within the step (``flatlined``), for the modalities that have
thresholds: a live sensor's readings always carry noise (with the simulation's default F/T noise,
0.05 N, the per-step standard deviation is at least 0.04 N on clean data). A sensor configured without
noise (``ft_sensor.force_noise_std=0``) reads exact zeros at rest and would be flagged there, as would a
step whose window is padded with copies of one reading (the first frame of a LeRobot-sourced episode).

Only the product of experts has variances that are trained; the concatenation has no signal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

FLAG_QUANTILE = 0.99
LOW_QUANTILE = 0.01  # the lower thresholds of two-sided flags: as far into the other tail
FLATLINE_STD = 1e-6  # a step's readings whose every channel varies less than this: a dead or stuck sensor
FLAG_RULES = "thresholds+flatline"  # what flags checks; evaluations that read the flags record it (resume keys)


def flatlined(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{modality: (B,) bool} for the time-series inputs ((B, T, C), T > 1, e.g. force (B, 50, 6)): True
    where every channel's standard deviation over the step's T readings is under ``FLATLINE_STD``."""
    return {m: x.float().std(1).amax(-1) < FLATLINE_STD for m, x in inputs.items() if x.dim() == 3 and x.shape[1] > 1}


@dataclass
class Reliability:
    """Per-modality flag thresholds on the expert mean log-variance, and where they came from.

    ``thresholds``: {modality: log-variance (nats, mean over z's dimensions)}; ``quantile``: the
    quantile of clean values each threshold is; ``samples``: how many clean samples set them;
    ``low``: {modality: log-variance}, the lower thresholds (an expert surer than clean inputs make
    it), the ``low_quantile`` of the clean values; empty for one-sided flags."""

    thresholds: dict[str, float] = field(default_factory=dict)
    quantile: float = FLAG_QUANTILE
    samples: int = 0
    low: dict[str, float] = field(default_factory=dict)
    low_quantile: float | None = None

    def to_json(self) -> str:
        d: dict = {"thresholds": self.thresholds, "quantile": self.quantile, "samples": self.samples}
        if self.low:
            d.update(low=self.low, low_quantile=self.low_quantile)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> Reliability:
        d = json.loads(text)
        low_q = d.get("low_quantile")
        return cls({m: float(v) for m, v in d["thresholds"].items()}, float(d["quantile"]), int(d["samples"]),
                   {m: float(v) for m, v in d.get("low", {}).items()}, None if low_q is None else float(low_q))

    def flags(self, logvars: dict[str, torch.Tensor],
              inputs: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """{modality: (B,) bool}: True where that expert's mean log-variance exceeds its threshold, or
        lies under its lower threshold where one is set; with the model's ``inputs``, also where a time
        series has flatlined (``flatlined``). Modalities without a threshold are never flagged."""
        out = {m: lv > self.thresholds[m] for m, lv in logvars.items() if m in self.thresholds}
        for m, lv in logvars.items():
            if m in self.low:
                out[m] = out[m] | (lv < self.low[m]) if m in out else lv < self.low[m]
        for m, flat in flatlined({m: x for m, x in (inputs or {}).items()
                                  if m in logvars and m in self.thresholds}).items():
            out[m] = out[m] | flat.to(logvars[m].device) if m in out else flat.to(logvars[m].device)
        return out

    def keep(self, logvars: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None,
             inputs: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Per-sample presence masks ({modality: (B,) float 0/1}) with the flagged modalities left out:
        ``present`` (kept as it is where nothing is flagged) times "not flagged" (``flags``)."""
        out = dict(present or {})
        for m, flagged in self.flags(logvars, inputs).items():
            keep = (~flagged).float()
            out[m] = out[m] * keep if m in out else keep
        return out


def calibrate(logvars: dict[str, np.ndarray], quantile: float = FLAG_QUANTILE,
              low_quantile: float | None = None) -> Reliability:
    """Thresholds from clean samples' expert mean log-variances ({modality: (N,)}); NaN values (a
    modality left out of a sample) are ignored. ``low_quantile`` (e.g. 0.001) also sets lower
    thresholds (two-sided flags)."""
    for name, q in (("quantile", quantile), ("low_quantile", low_quantile)):
        if q is not None and not 0.0 < q < 1.0:
            raise ValueError(f"{name} must lie in (0, 1), got {q!r}")
    if low_quantile is not None and low_quantile >= quantile:
        raise ValueError(f"low_quantile {low_quantile} must lie below quantile {quantile}")
    thresholds, low, n = {}, {}, 0
    for m, lv in logvars.items():
        seen = np.asarray(lv, dtype=np.float64)
        seen = seen[np.isfinite(seen)]
        if len(seen):
            thresholds[m] = float(np.quantile(seen, quantile))
            if low_quantile is not None:
                low[m] = float(np.quantile(seen, low_quantile))
            n = max(n, len(seen))
    return Reliability(thresholds, quantile, n, low, low_quantile if low else None)


@torch.no_grad()
def collect_logvars(encoder, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
    """{modality: (N,)} expert mean log-variances of a ``MultimodalEncoder`` over batches of model
    inputs (the dataset's batches: CHW images, PROPRIO8)."""
    from mmrep.models.network import network_of

    out: dict[str, list[np.ndarray]] = {}
    was_training = encoder.training
    encoder.eval()
    try:
        for batch in batches:
            # the model-input method, also for an ``Encoder`` (whose own takes env observations)
            for m, lv in network_of(encoder).expert_logvars(batch).items():
                out.setdefault(m, []).append(lv.float().cpu().numpy())
    finally:
        encoder.train(was_training)
    return {m: np.concatenate(v) for m, v in out.items()}
