"""Encoder networks by name: which class ``mmrep train`` builds and ``load_encoder`` rebuilds.

An encoder network is any ``torch.nn.Module`` built as ``cls(cfg: ModelConfig, **cfg.encoder_kwargs)``
that keeps ``cfg`` as ``self.cfg`` and whose ``forward(batch, modalities=None, present=None)`` maps a
batch of model inputs (``sim.modalities``' ``to_model``: CHW images, PROPRIO8, F/T (B, n, 6)) to z,
(B, cfg.z_dim). Optional, and used when there:

    expert_logvars(batch) -> {modality: (B,)}   reliability flags and rejection (product of experts)
    feature_maps(batch) -> list of (B, C, H, W) the RGB feature maps the flow head needs (as
                                                ``ImageEncoder`` gives them: 16, 32, 64, 64, 128, 128
                                                channels at S/2 ... S/64); without it, ``model.flow``
                                                must be off

``ModelConfig.encoder_target`` chooses the class, Hydra-style: a name of ``ENCODER_NETWORKS`` or a
dotted path ``package.module.Class`` (``package.module:Class`` too); empty: ``MultimodalEncoder``, the
paper's per-modality experts and fusion. The encoder file records the class's dotted path, so
``load_encoder`` rebuilds a user's own network (its module must be importable where it is loaded).
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

DEFAULT_NETWORK = "multimodal"
ENCODER_NETWORKS: dict[str, str] = {DEFAULT_NETWORK: "mmrep.models.multimodal.MultimodalEncoder"}
"""Short names of encoder networks -> their dotted paths."""


def register_network(name: str, target: str) -> None:
    """Give the encoder network ``target`` (a dotted path) the short name ``name`` for ``encoder_target``."""
    ENCODER_NETWORKS[name] = target


def resolve_network(target: str | None) -> type[nn.Module]:
    """The class named by ``target`` (a registered name or a dotted path; None or "": the default).
    Raises ``ValueError`` naming the target when it cannot be imported or is not a module class."""
    path = ENCODER_NETWORKS.get(target or DEFAULT_NETWORK, target)
    module_name, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"encoder_target {target!r} is not a registered name {sorted(ENCODER_NETWORKS)} "
                         f"nor a dotted path 'package.module.Class'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"encoder_target {target!r}: cannot import it ({type(err).__name__}: {err})") from err
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ValueError(f"encoder_target {target!r} is not a torch.nn.Module class")
    return obj


def target_of(network: nn.Module) -> str:
    """The dotted path of ``network``'s class (what an encoder file records)."""
    cls = type(network)
    return f"{cls.__module__}.{cls.__qualname__}"


def build_network(cfg, target: str | None = None) -> nn.Module:
    """A fresh encoder network for ``cfg`` (a ``ModelConfig``): ``target`` or ``cfg.encoder_target``."""
    cls = resolve_network(target if target is not None else cfg.encoder_target)
    return cls(cfg, **dict(cfg.encoder_kwargs or {}))


def network_of(encoder: nn.Module) -> nn.Module:
    """The network inside a deployment ``Encoder`` (which wraps one), or ``encoder`` itself."""
    return encoder.net if getattr(encoder, "wraps_network", False) else encoder
