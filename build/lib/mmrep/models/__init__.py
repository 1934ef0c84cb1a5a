"""The multimodal representation: encoders, fusion, heads, losses."""

from mmrep.config import HEADS, MODALITIES, ModelConfig
from mmrep.models.losses import MetricAccumulator, compute_losses
from mmrep.models.multimodal import MultimodalEncoder, MultimodalModel

__all__ = ["HEADS", "MODALITIES", "MetricAccumulator", "ModelConfig", "MultimodalEncoder", "MultimodalModel",
           "compute_losses"]
