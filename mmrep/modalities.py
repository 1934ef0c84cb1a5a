"""The modality registry's torch half, importable from here: it lives in ``mmrep.models.modalities``
(inside the models package, so that the model and the registry import in either order)."""

from mmrep.models.modalities import *  # noqa: F401,F403
from mmrep.models.modalities import (  # noqa: F401
    DEFAULT_IMAGE_SIZE,
    ENCODER_BUILDERS,
    build_modality_encoder,
    register_encoder_builder,
)
