"""The old name of ``mmrep.models.experts`` (the per-modality expert networks), kept so that old imports
work; ``mmrep.encoder`` is the deployment encoder and its file format, a different thing."""

from mmrep.models.experts import IMAGE_CONVS, LEAK, CausalConv1d, ForceEncoder, ImageEncoder, ProprioEncoder  # noqa: F401
