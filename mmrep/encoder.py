"""The trained encoder's one file format: ``export_encoder`` writes it, ``load_encoder`` reads it.

An encoder file (``encoder.pt``) is a ``torch.save`` of plain data only (loaded with
``weights_only=True``)::

    {"format": "mmrep-encoder-2", "config": <ModelConfig as JSON>, "state_dict": {name: tensor},
     "reliability": <mmrep.reliability.Reliability as JSON>}     (optional: the flag thresholds)

``state_dict`` is that of the encoder network: a ``MultimodalEncoder`` (``encoders.<modality>.*``,
``fuse.*``), or the class whose dotted path the optional ``"network"`` entry records (a user's own
network, ``mmrep.models.network``: ``load_encoder`` imports its module, as Hydra's ``_target_`` does,
so load only files you trust to name modules). Files of the first format (``mmrep-encoder-1``, keys
``rgb_encoder.*`` ...) are read too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmrep.models import ModelConfig
from mmrep.models.multimodal import DEFAULT_IMAGE_SIZE, MultimodalEncoder
from mmrep.models.network import build_network, network_of, target_of
from mmrep.models.reliability import Reliability
from mmrep.torch_files import load_torch_file, save_atomic  # noqa: F401  (save_atomic: re-exported)
from sim.modalities import modality
from sim.observation import ObservationShapeError

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


def check_modality_names(names, known, what: str) -> None:
    """ValueError naming ``what`` and the names that are not among ``known`` (a misspelt modality would
    otherwise be left out without a word); a single string is refused too (it would be read letter by letter)."""
    if names is None:
        return
    if isinstance(names, str):
        raise ValueError(f"{what} must be a list of modality names, got the string {names!r}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{what} names {unknown}, not modalities of this encoder {list(known)}")


def check_model_inputs(inputs: dict[str, torch.Tensor]) -> None:
    """ObservationShapeError naming the key when the model inputs' batch sizes differ, ValueError naming
    the key and the first batch index when one holds NaN or inf (z would be silently non-finite)."""
    sizes = {m: int(t.shape[0]) for m, t in inputs.items()}
    if 0 in sizes.values():
        raise ObservationShapeError(f"an empty batch (0 samples in {[m for m, b in sizes.items() if b == 0]}): "
                                    "nothing to encode")
    if len(set(sizes.values())) > 1:
        first = next(iter(sizes))
        odd = next(m for m, b in sizes.items() if b != sizes[first])
        raise ObservationShapeError(f"batch sizes differ: {odd!r} has {sizes[odd]} samples, {first!r} has "
                                    f"{sizes[first]} ({sizes})")
    for m, t in inputs.items():
        if t.is_floating_point():
            bad = ~torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
            if bad.any():
                idx = int(bad.nonzero()[0, 0])
                raise ValueError(f"obs[{m!r}] holds NaN or inf at batch index {idx} ({int(bad.sum())} of "
                                 f"{t.shape[0]} samples); the encoder would return a non-finite z")


class Encoder(nn.Module):
    """A trained encoder for deployment: ``encode(obs) -> z`` on the env's observation dict.

    It wraps an encoder network (``net``: a ``MultimodalEncoder``, or any network of
    ``mmrep.models.network``) rather than being one: ``Encoder(net)``, or ``Encoder(cfg)`` for a fresh
    network of ``cfg``. The network's methods and attributes (``cfg``, ``encoders``, ``image_experts``,
    ...) read through, and calling the encoder calls the network on model inputs.

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
    wraps_network = True  # mmrep.models.network.network_of unwraps it

    def __init__(self, net: nn.Module | ModelConfig, reliability: Reliability | None = None) -> None:
        super().__init__()
        self.net = build_network(net) if isinstance(net, ModelConfig) else net
        self.reliability = reliability

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # parameters, buffers and submodules (``net``)
        except AttributeError:
            if name == "net":
                raise
            return getattr(self.net, name)  # the network's methods and attributes read through

    def forward(self, batch: dict[str, torch.Tensor], *args, **kwargs) -> torch.Tensor:
        """z (B, z_dim) of a batch of model inputs: the network's forward."""
        return self.net(batch, *args, **kwargs)

    @property
    def cfg(self) -> ModelConfig:
        return self.net.cfg

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
        batched = None
        out: dict[str, torch.Tensor] = {}
        given = [m for m in self.cfg.modalities if m in obs]
        if not given:
            raise ObservationShapeError(f"observation holds none of this encoder's modalities "
                                        f"{self.cfg.modalities}; got keys {sorted(obs)}")
        for m in given:
            x = obs[m]
            x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
            spec = modality(m)
            is_batched = spec.check(x, s, batched)
            if batched is not None and is_batched != batched:
                raise ObservationShapeError(f"{m!r} is {'batched' if is_batched else 'single'} but the "
                                            f"other keys are not: {x.shape}")
            batched = is_batched
            # the one env-to-model conversion (sim.modalities)
            t = torch.from_numpy(np.ascontiguousarray(spec.to_model(x if is_batched else x[None])))
            out[m] = t.to(device) if transfer is None else transfer(m, t)
        check_model_inputs(out)
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
        check_modality_names(modalities, self.cfg.modalities, "modalities")
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
                if not ((t == 0) | (t == 1)).all():  # the mask scales the expert's precision: only 0 or 1
                    raise ValueError(f"present[{m!r}] must be booleans (True: the sense is there), got "
                                     f"{sorted(set(t.tolist()))}")
                masks[m] = t
        if reject:  # the experts once: their log-variances are the flags' signal and the product's input
            reliability = self.require_reliability()
            mus, logvars, _, names = self.net.image_experts(inputs, mods)
            state_mus, state_logvars, state_names = self.net.state_experts(inputs, modalities=mods)
            names, mus, logvars = names + state_names, mus + state_mus, logvars + state_logvars
            masks = reliability.keep({m: lv.float().mean(1) for m, lv in zip(names, logvars)}, masks, inputs)
            z = self.net.fuse_experts(mus, logvars, sample=False, names=names, present=masks,
                                      batch_size=next(iter(inputs.values())).shape[0])[0]
        else:
            z = self(inputs, mods, present=masks)
        return z[0] if single else z

    def require_reliability(self) -> Reliability:
        """The reliability thresholds; ``ValueError`` naming the fix when there are none."""
        if self.reliability is None or not self.reliability.thresholds:
            raise ValueError("this encoder has no reliability thresholds (an encoder of the concatenation, or "
                             "one exported before they existed: `python -m mmrep.reliability ENCODER DATA` sets them)")
        return self.reliability

    @torch.no_grad()
    def flags(self, obs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """{modality: () or (B,) bool}: True where that modality's expert is less sure of the input than
        it was of 99% of clean held-out inputs, or surer than 99% where two-sided thresholds are set, or
        where its time series has flatlined (``reliability``, ``mmrep.models.reliability.flatlined``):
        a likely corrupted sense."""
        inputs, single = self.model_inputs(obs)
        out = self.require_reliability().flags(self.net.expert_logvars(inputs), inputs)
        return {m: v[0] if single else v for m, v in out.items()}

    @torch.no_grad()
    def expert_logvars(self, obs: dict[str, Any]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Each given modality's mean expert log-variance, () or (B,): how unsure its expert says it is
        (the product of experts weighs it by exp(-logvar)); a reliability signal."""
        inputs, single = self.model_inputs(obs)
        out = self.net.expert_logvars(inputs)
        return {m: v[0] if single else v for m, v in out.items()}


def export_encoder(encoder: nn.Module, path: Path, reliability: Reliability | None = None) -> None:
    """Write ``encoder`` (an ``Encoder`` or an encoder network: its weights, config, class and, when
    given, its reliability thresholds) atomically; refuses non-finite weights."""
    net = network_of(encoder)
    assert_finite_weights(net, f"encoder for {path}")
    weights = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    blob = {"format": FORMAT, "config": json.dumps(net.cfg.to_dict()), "state_dict": weights}
    if type(net) is not MultimodalEncoder:  # a file without it holds a MultimodalEncoder
        blob["network"] = target_of(net)
    if reliability is not None:
        blob["reliability"] = reliability.to_json()
    save_atomic(blob, path)


def read_safetensors(path: Path) -> dict[str, Any]:
    """The blob ``load_encoder`` reads (format, config JSON, state_dict, reliability) from a
    ``.safetensors`` file; the JSON beside it, when present, gives the config and thresholds."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    side = Path(path).with_suffix(".json")
    if side.exists():
        doc = json.loads(side.read_text())
        meta = {"format": doc.get("format"), "config": json.dumps(doc["config"]),
                **({"reliability": json.dumps(doc["reliability"])} if doc.get("reliability") else {}),
                **({"network": doc["network"]} if doc.get("network") else {})}
    if "config" not in meta:
        raise ValueError(f"{path} has no mmrep config (neither in its metadata nor in {side.name})")
    return {"format": meta.get("format"), "config": meta["config"], "state_dict": load_file(str(path)),
            "reliability": meta.get("reliability"), **({"network": meta["network"]} if "network" in meta else {})}


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> Encoder:
    """Load an encoder file written by ``mmrep train`` (``encoder.pt``), safely (``weights_only=True``), or its
    ``mmrep export-encoder --format safetensors`` copy (``.safetensors`` + ``.json``).
    Raises ``ValueError`` when the file is not an mmrep encoder file or its weights do not fit."""
    path = Path(path)
    if path.suffix == ".safetensors":  # mmrep.formats.encoder_export: weights + JSON config
        if not path.exists():
            raise FileNotFoundError(f"encoder file {path} does not exist")
        try:
            blob = read_safetensors(path)
        except Exception as err:  # safetensors and json raise several kinds for damaged files
            raise ValueError(f"encoder file {path} cannot be read ({type(err).__name__}: {err}): export it again "
                             "with mmrep export-encoder or download it again") from None
    else:
        blob = load_torch_file(path, "encoder file", "it is not an mmrep encoder file or it is damaged: export it "
                               "again (mmrep train writes encoder.pt at the end of a run) or download it again")
    fmt = blob.get("format") if isinstance(blob, dict) else None
    if fmt not in (FORMAT, "mmrep-encoder-1"):
        raise ValueError(f"{path} is not an mmrep encoder file (format {fmt!r}, expected {FORMAT!r})")
    cfg = ModelConfig.from_dict(json.loads(blob["config"]))
    state = blob["state_dict"]
    if fmt == "mmrep-encoder-1":
        state = {_rename_format_1(k): v for k, v in state.items()}
    try:
        enc = Encoder(build_network(cfg, blob.get("network")))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    try:
        missing, unexpected = enc.net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor of another shape than the config builds
        raise ValueError(f"{path}: weights do not match the config: {err}") from err
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
    scale, and the F/T summary's mean / std) is kept, since it is data statistics rather than learned features."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        fresh = Encoder(build_network(encoder.cfg, target_of(network_of(encoder))))
    finally:
        torch.random.set_rng_state(state)  # the caller's stream is left as it was
    buffers = dict(network_of(encoder).named_buffers())
    for name, buf in fresh.net.named_buffers():
        buf.copy_(buffers[name])
    device = next(encoder.parameters()).device
    return fresh.to(device).eval()


def _rename_format_1(key: str) -> str:
    for old, new in _FORMAT_1_PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key
