"""The trained encoder's one file format: ``export_encoder`` writes it, ``load_encoder`` reads it.

An encoder file (``encoder.pt``) is a ``torch.save`` of plain data only (loaded with
``weights_only=True``)::

    {"format": "mmrep-encoder-2", "config": <ModelConfig as JSON>, "state_dict": {name: tensor},
     "reliability": <mmrep.reliability.Reliability as JSON>}     (optional: the flag thresholds)

``state_dict`` is that of a ``MultimodalEncoder`` (``encoders.<modality>.*``, ``fuse.*``). Files of
the first format (``mmrep-encoder-1``, keys ``rgb_encoder.*`` ...) are read too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrep.models import ModelConfig
from mmrep.models.multimodal import DEFAULT_IMAGE_SIZE, MultimodalEncoder
from mmrep.reliability import Reliability
from sim.observation import PROPRIO13_DIM, ObservationShapeError, check_shape, proprio8_from_proprio13

Transfer = Callable[[str, torch.Tensor], torch.Tensor]  # (modality, CPU tensor) -> the tensor on the model's device

FORMAT = "mmrep-encoder-2"
_FORMAT_1_PREFIXES = {"rgb_encoder.": "encoders.rgb.", "depth_encoder.": "encoders.depth.",
                      "force_encoder.": "encoders.force.", "proprio_encoder.": "encoders.proprio."}


class NonFiniteWeightsError(ValueError):
    """A model holds NaN or inf weights; nothing was written."""


def assert_finite_weights(module: torch.nn.Module, what: str) -> None:
    """Raise ``NonFiniteWeightsError`` naming the first non-finite tensor of ``module``."""
    bad = [k for k, v in module.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise NonFiniteWeightsError(f"{what}: {len(bad)} tensor(s) hold NaN or inf (first: {bad[0]}); not written")


class Encoder(MultimodalEncoder):
    """A trained encoder for deployment: ``encode(obs) -> z`` on the env's observation dict.

    ``obs`` holds, single or batched (a leading batch axis), numpy or torch, the keys of the encoder's
    modalities: ``rgb`` (S, S, 3) uint8, ``depth`` (S, S, 1) metres, ``force`` (n, 6) N / N m, and
    ``proprio`` (13,) the env's PROPRIO13 (``sim.observation``). It returns z, (z_dim,) or
    (B, z_dim) float32, the posterior mean. A key with the wrong shape raises
    ``ObservationShapeError`` naming the key and the expected shape.

    Missing modalities: a key absent from ``obs`` (or not named in ``modalities``) is left out of every
    sample, and ``present`` ({modality: (B,) bool}) leaves it out of chosen samples. The product of
    experts then fuses the remaining experts with the N(0, I) prior (z is the prior's mean, 0, when
    nothing is left); the concatenation puts its "missing" vector in the modality's place (learned
    with ``model.modality_dropout`` > 0, zeros otherwise).

    Reliability (product of experts): ``reliability`` holds per-modality thresholds on each expert's
    mean log-variance, set on clean held-out samples when ``mmrep train`` exports the encoder
    (``mmrep.reliability``); ``flags(obs)`` says which modalities look corrupted, and
    ``encode(obs, reject=True)`` leaves the flagged experts out of those samples' product.
    """

    reliability: Reliability | None = None

    @property
    def z_dim(self) -> int:
        return self.cfg.z_dim

    @property
    def image_size(self) -> int:
        return int(self.cfg.image_size or DEFAULT_IMAGE_SIZE)

    def model_inputs(self, obs: dict[str, Any],
                     transfer: Transfer | None = None) -> tuple[dict[str, torch.Tensor], bool]:
        """The model's input batch (CHW images, PROPRIO8) from an env observation dict, and whether
        ``obs`` was a single observation (no batch axis). ``transfer(modality, cpu_tensor)`` moves each
        input to the model's device (default ``.to(device)``; ``mmrep.rl.latent.PinnedTransfer`` stages
        it in a reused pinned buffer)."""
        device = next(self.parameters()).device
        s = self.image_size
        expected = {"rgb": (s, s, 3), "depth": (s, s, 1), "proprio": (PROPRIO13_DIM,)}
        batched = None
        out: dict[str, torch.Tensor] = {}
        given = [m for m in self.cfg.modalities if m in obs]
        if not given:
            raise ObservationShapeError(f"observation holds none of this encoder's modalities "
                                        f"{self.cfg.modalities}; got keys {sorted(obs)}")
        for m in given:
            x = obs[m]
            x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
            if m == "force":
                is_batched = x.ndim == 3
                if x.ndim not in (2, 3) or x.shape[-1] != 6 or x.shape[-2] < 1:
                    raise ObservationShapeError(f"'force' must be (n, 6) or (B, n, 6), got {x.shape}")
            else:
                is_batched = check_shape(m, x, expected[m], batched)
            if batched is not None and is_batched != batched:
                raise ObservationShapeError(f"{m!r} is {'batched' if is_batched else 'single'} but the "
                                            f"other keys are not: {x.shape}")
            batched = is_batched
            if not is_batched:
                x = x[None]
            if m == "rgb":
                if x.dtype != np.uint8:
                    raise ObservationShapeError(f"'rgb' must be uint8 (0-255), got {x.dtype}")
                t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            elif m == "depth":
                t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))
            elif m == "proprio":
                t = torch.from_numpy(proprio8_from_proprio13(x))
            else:
                t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            out[m] = t.to(device) if transfer is None else transfer(m, t)
        return out, not batched

    @torch.no_grad()
    def encode(self, obs: dict[str, Any], modalities: list[str] | None = None,
               present: dict[str, Any] | None = None, reject: bool = False,
               transfer: Transfer | None = None) -> torch.Tensor:
        """z of an env observation dict (single or batched). ``modalities`` uses only those; a
        modality absent from ``obs`` is left out; ``present`` ({modality: (B,) bool, or a bool for
        a single observation}) leaves a modality out of chosen samples (see the class doc);
        ``reject`` also leaves out each sample's flagged modalities (``flags``); ``transfer``: as
        ``model_inputs``."""
        inputs, single = self.model_inputs(obs, transfer)
        mods = [m for m in (modalities if modalities is not None else self.cfg.modalities) if m in inputs]
        masks = None
        if present:
            unknown = sorted(set(present) - set(self.cfg.modalities))
            if unknown:
                raise ValueError(f"present names {unknown}, not modalities of this encoder {self.cfg.modalities}")
            b = next(iter(inputs.values())).shape[0]
            device = next(self.parameters()).device
            masks = {}
            for m, v in present.items():
                t = torch.as_tensor(np.asarray(v, dtype=np.float32).reshape(-1), device=device)
                if t.numel() != b:
                    raise ObservationShapeError(f"present[{m!r}] has {t.numel()} values for a batch of {b}")
                masks[m] = t
        if reject:
            masks = self._reliability().keep(MultimodalEncoder.expert_logvars(self, inputs), masks)
        z = self(inputs, mods, present=masks)
        return z[0] if single else z

    def _reliability(self) -> Reliability:
        if self.reliability is None or not self.reliability.thresholds:
            raise ValueError("this encoder has no reliability thresholds (an encoder of the concatenation, or "
                             "one exported before they existed: `python -m mmrep.reliability ENCODER DATA` sets them)")
        return self.reliability

    @torch.no_grad()
    def flags(self, obs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """{modality: () or (B,) bool}: True where that modality's expert is less sure of the input than
        it was of 99% of clean held-out inputs (``reliability``): a likely corrupted sense."""
        inputs, single = self.model_inputs(obs)
        out = self._reliability().flags(MultimodalEncoder.expert_logvars(self, inputs))
        return {m: v[0] if single else v for m, v in out.items()}

    @torch.no_grad()
    def expert_logvars(self, obs: dict[str, Any]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Each given modality's mean expert log-variance, () or (B,): how unsure its expert says it is
        (the product of experts weighs it by exp(-logvar)); a reliability signal."""
        inputs, single = self.model_inputs(obs)
        out = MultimodalEncoder.expert_logvars(self, inputs)
        return {m: v[0] if single else v for m, v in out.items()}


def save_atomic(obj: dict, path: Path) -> None:
    """``torch.save`` so that a kill at any moment leaves the old or the new file, never half of one."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def export_encoder(encoder: MultimodalEncoder, path: Path, reliability: Reliability | None = None) -> None:
    """Write ``encoder`` (weights, config and, when given, its reliability thresholds) atomically;
    refuses non-finite weights."""
    assert_finite_weights(encoder, f"encoder for {path}")
    weights = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    blob = {"format": FORMAT, "config": json.dumps(encoder.cfg.to_dict()), "state_dict": weights}
    if reliability is not None:
        blob["reliability"] = reliability.to_json()
    save_atomic(blob, path)


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> Encoder:
    """Load an encoder file written by ``mmrep train`` (``encoder.pt``), safely (``weights_only=True``).
    Raises ``ValueError`` when the file is not an mmrep encoder file or its weights do not fit."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"encoder file {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds (pickle, zip, IndexError) for foreign files
        raise ValueError(f"{path} is not an mmrep encoder file (torch.load failed: "
                         f"{type(err).__name__}: {err})") from err
    fmt = blob.get("format") if isinstance(blob, dict) else None
    if fmt not in (FORMAT, "mmrep-encoder-1"):
        raise ValueError(f"{path} is not an mmrep encoder file (format {fmt!r}, expected {FORMAT!r})")
    cfg = ModelConfig.from_dict(json.loads(blob["config"]))
    state = blob["state_dict"]
    if fmt == "mmrep-encoder-1":
        state = {_rename_format_1(k): v for k, v in state.items()}
    enc = Encoder(cfg)
    missing, unexpected = enc.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the config (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]})")
    assert_finite_weights(enc, str(path))
    if blob.get("reliability"):
        enc.reliability = Reliability.from_json(blob["reliability"])
    return enc.to(device).eval()


def random_like(encoder: Encoder, seed: int = 0) -> Encoder:
    """The same architecture with freshly initialised weights (``torch.manual_seed(seed)``), for the
    "random features" baseline: the input standardisation (buffers: proprioception mean / std, F/T
    scale) is kept, since it is data statistics rather than learned features."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        fresh = Encoder(encoder.cfg)
    finally:
        torch.random.set_rng_state(state)  # the caller's stream is left as it was
    buffers = dict(encoder.named_buffers())
    for name, buf in fresh.named_buffers():
        buf.copy_(buffers[name])
    device = next(encoder.parameters()).device
    return fresh.to(device).eval()


def _rename_format_1(key: str) -> str:
    for old, new in _FORMAT_1_PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key
