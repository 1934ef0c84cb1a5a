"""Camera memory: while the camera looks corrupted, fuse the camera experts it last trusted.

A frozen policy under an occluder that appears after first contact (the paper's video) loses the
hole: the occluded view moves z, and a memoryless policy cannot remember where the hole was. The
product of experts makes a remedy cheap, with no retraining: each step, the reliability flags
(``mmrep.reliability``, two-sided: an occluded camera makes its experts *surer* than clean views do)
say whether the camera (``rgb`` and ``depth`` together, one sensor) looks unlike its clean inputs; if
it does, the RGB and depth experts' posteriors (mu, logvar) of the last step it looked clean take
their place in the product, while F/T and proprioception stay live. With nothing held yet (an
episode that starts occluded) the current experts are used, so z is then what ``Encoder.encode``
gives.

With ``reject=True`` the other senses' experts (F/T, proprioception) that the thresholds flag are
left out of that step's product (the "reject" of "Detect, Reject, Correct", Lee et al. 2021): a biased
or dead F/T sensor then stops moving z, and the camera (or its memory) and proprioception carry it.

With ``odometry=True`` the memory also says how far the arm has moved since: a held camera expert
reads the peg and the hole where they were at the last clean view, and a policy that goes on acting on
it cannot tell how much of that offset it has already covered (measured on the camera-error setting,
``benchmarks/occluder_paths.py``: with memory, 8 of 10 failures under the occluder at first contact
travel 90-200 mm sideways after it appears 4-17 mm from the hole). ``last_odometry`` then holds, per
sample of the last ``encode``, whether the camera experts were held and the tip's displacement (m,
world frame) since the held view: dead reckoning from proprioception, the "correct" of "Detect, Reject,
Correct" done with the sense that stays live.

Memory is per slot (one slot per sub-environment of a batch): ``reset(slots)`` at each episode's start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from mmrep.encoder import Encoder
from sim.modalities import CAMERA, camera_modalities  # noqa: F401  (CAMERA re-exported)


class CameraMemory:
    """Per-slot memory of an encoder's last trusted camera experts (module doc).

    ``encoder``: a product-of-experts ``Encoder`` with reliability thresholds (two-sided ones to catch
    an occluder: ``python -m mmrep.reliability ENCODER DATA`` sets them). ``held_steps`` / ``steps``
    count the samples encoded with held experts / all samples; ``reject``: also leave out the flagged
    experts of the other senses, counted per modality in ``rejected`` (samples); ``odometry``: keep the
    tip position of each held view and set ``last_odometry`` (module doc; ``encode`` then needs ``tip``).
    """

    ODOMETRY_DIM = 4  # held (0 or 1), then the tip's displacement since the held view: dx, dy, dz (m)

    def __init__(self, encoder: Encoder, reject: bool = False, odometry: bool = False) -> None:
        if encoder.cfg.fusion != "poe":
            raise ValueError(f"camera memory needs the product of experts; this encoder fuses by "
                             f"{encoder.cfg.fusion!r}")
        self.camera = list(camera_modalities(encoder.cfg.modalities))
        if not self.camera:
            raise ValueError(f"camera memory needs a camera modality {CAMERA}; the encoder reads "
                             f"{encoder.cfg.modalities}")
        self.reliability = encoder.require_reliability()  # raises, naming the fix, when there are no thresholds
        missing = [m for m in self.camera if m not in self.reliability.thresholds]
        if missing:
            raise ValueError(f"the encoder's reliability thresholds leave out {missing}")
        if not any(m in self.reliability.low for m in self.camera):
            raise ValueError("the encoder's reliability thresholds are one-sided, and an occluded camera makes "
                             "its experts surer, not less sure: set two-sided ones with "
                             "`python -m mmrep.reliability ENCODER DATA`")
        self.encoder = encoder
        self.held: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}  # slot -> modality -> (mu, lv)
        self.held_steps = 0
        self.steps = 0
        self.reject = reject
        self.rejected: dict[str, int] = {}
        self.odometry = odometry
        self.anchor: dict[int, np.ndarray] = {}  # slot -> tip position (m) at its held view
        self.last_odometry = np.zeros((0, self.ODOMETRY_DIM), np.float32)

    def reset(self, slots: Iterable[int] | None = None) -> None:
        """Forget the held experts of ``slots`` (all when None): a new episode starts there."""
        if slots is None:
            self.held.clear()
            self.anchor.clear()
        else:
            for s in slots:
                self.held.pop(int(s), None)
                self.anchor.pop(int(s), None)

    @torch.no_grad()
    def encode(self, obs: dict[str, Any], slots: Sequence[int] | None = None, update: bool = True,
               tip: np.ndarray | None = None) -> torch.Tensor:
        """z (B, z_dim) of a batched env observation dict, sample b in slot ``slots[b]`` (b when None).
        ``update=False`` reads the memory without changing it (an episode's terminal observation).
        ``tip``: (B, 3) the tip positions (m, world frame; PROPRIO13's first three), needed with odometry."""
        if self.odometry and tip is None:
            raise ValueError("CameraMemory(odometry=True).encode needs the tip positions (tip=...)")
        enc = self.encoder
        inputs, single = enc.model_inputs(obs)
        if single:
            raise ValueError("CameraMemory.encode takes a batched observation dict (a leading batch axis)")
        given = [m for m in enc.cfg.modalities if m in inputs]
        mus, logvars, _, names = enc.image_experts(inputs, given)
        state_mus, state_logvars, state_names = enc.state_experts(inputs, modalities=given)
        cam = [i for i, m in enumerate(names) if m in self.camera]
        flags = self.reliability.flags({names[i]: logvars[i].float().mean(1) for i in cam})
        batch = next(iter(inputs.values())).shape[0]
        suspect = torch.stack(list(flags.values())).any(0) if flags else torch.zeros(batch, dtype=torch.bool)
        mus, logvars = [t.clone() for t in mus], [t.clone() for t in logvars]
        slots = range(len(suspect)) if slots is None else [int(s) for s in slots]
        if len(slots) != len(suspect):
            raise ValueError(f"{len(slots)} slots for a batch of {len(suspect)}")
        odometry = np.zeros((len(slots), self.ODOMETRY_DIM), np.float32)
        for b, (slot, bad) in enumerate(zip(slots, suspect.tolist())):
            self.steps += 1
            if bad and all(names[i] in self.held.get(slot, {}) for i in cam):
                for i in cam:
                    mus[i][b], logvars[i][b] = self.held[slot][names[i]]
                self.held_steps += 1
                if self.odometry:
                    odometry[b, 0] = 1.0
                    odometry[b, 1:] = np.asarray(tip[b], np.float64)[:3] - self.anchor[slot]
            elif not bad and update:
                self.held[slot] = {names[i]: (mus[i][b].clone(), logvars[i][b].clone()) for i in cam}
                if self.odometry:
                    self.anchor[slot] = np.asarray(tip[b], np.float64)[:3].copy()
        self.last_odometry = odometry
        present = None
        if self.reject:
            flagged = self.reliability.flags({m: lv.float().mean(1) for m, lv in zip(state_names, state_logvars)},
                                             inputs)
            present = {m: (~f).float() for m, f in flagged.items()}
            for m, f in flagged.items():
                self.rejected[m] = self.rejected.get(m, 0) + int(f.sum())
        return enc.fuse_experts(mus + state_mus, logvars + state_logvars, sample=False,
                                names=names + state_names, present=present, batch_size=batch)[0]
