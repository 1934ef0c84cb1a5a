"""The modality registry, torch half: the encoder network each modality gets.

The torch-free half (key, space, the env-to-model conversion, perturbations, camera or not) is
``sim.modalities``; this module adds, per key, a builder ``(ModelConfig) -> nn.Module`` whose
forward maps the modality's model input (B, ...) to ``(mu, logvar)`` (each (B, z_dim)), and, for a
camera modality, also a list of feature maps as a third output (the RGB ones are the flow decoder's
skips). ``MultimodalEncoder`` builds its experts from here.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from mmrep.config import ModelConfig
from mmrep.models.experts import ForceEncoder, ImageEncoder, ProprioEncoder
from sim.modalities import (  # noqa: F401  (the registry's torch-free half, re-exported for one import)
    CAMERA,
    MODALITIES,
    MODALITY_REGISTRY,
    Modality,
    camera_modalities,
    modality,
    register_modality,
    to_model_inputs,
)

DEFAULT_IMAGE_SIZE = 128  # px, when ``ModelConfig.image_size`` is left to the data and no data is at hand

EncoderBuilder = Callable[[ModelConfig], nn.Module]
ENCODER_BUILDERS: dict[str, EncoderBuilder] = {}
"""The per-modality encoder builder of every modality, by key."""


def register_encoder_builder(key: str, builder: EncoderBuilder, replace: bool = False) -> EncoderBuilder:
    """Register the network a ``MultimodalEncoder`` builds for modality ``key`` (registered in
    ``sim.modalities`` first); a key that already has one raises ``ValueError`` unless ``replace``."""
    modality(key)
    if key in ENCODER_BUILDERS and not replace:
        raise ValueError(f"modality {key!r} already has an encoder builder")
    ENCODER_BUILDERS[key] = builder
    return builder


def build_modality_encoder(key: str, cfg: ModelConfig) -> nn.Module:
    """The encoder network of modality ``key`` for ``cfg``."""
    try:
        builder = ENCODER_BUILDERS[key]
    except KeyError:
        raise ValueError(f"modality {key!r} has no encoder builder (mmrep.modalities.register_encoder_builder); "
                         f"known: {sorted(ENCODER_BUILDERS)}") from None
    return builder(cfg)


def _size(cfg: ModelConfig) -> int:
    return cfg.image_size or DEFAULT_IMAGE_SIZE


register_encoder_builder("rgb", lambda cfg: ImageEncoder(3, cfg.z_dim, _size(cfg), scale=1 / 255))
register_encoder_builder("depth", lambda cfg: ImageEncoder(1, cfg.z_dim, _size(cfg)))
register_encoder_builder("force", lambda cfg: ForceEncoder(cfg.z_dim, summary=cfg.force_summary))
register_encoder_builder("proprio", lambda cfg: ProprioEncoder(cfg.z_dim))
