"""Reading datasets: native simulated shards and the paper's reference layout, as torch samples."""

from mmrep.data.dataset import MultimodalDataset
from mmrep.data.sources import ReferenceSource, SimSource, open_source

__all__ = ["MultimodalDataset", "ReferenceSource", "SimSource", "open_source"]
