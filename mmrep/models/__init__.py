"""The multimodal representation: encoders, fusion, heads, losses."""

from mmrep.models.losses import MetricAccumulator, compute_losses
from mmrep.models.multimodal import HEADS, MODALITIES, ModelConfig, MultimodalModel

__all__ = ["HEADS", "MODALITIES", "MetricAccumulator", "ModelConfig", "MultimodalModel", "compute_losses"]
