"""Reading datasets as torch samples: native simulated shards and the paper's reference layout.

The names below load lazily, so ``import mmrep.data.sources`` (numpy and h5py only) does not pull in
torch; the format itself (verify, info, manifest, split) lives in ``sim.dataset_format``.
"""

from __future__ import annotations

from importlib import import_module

_LAZY = {"MultimodalDataset": "mmrep.data.dataset", "NonFiniteDataError": "mmrep.data.dataset",
         "DataReadError": "mmrep.data.sources", "ReferenceSource": "mmrep.data.sources",
         "SimSource": "mmrep.data.sources", "open_source": "mmrep.data.dataset"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmrep.data' has no attribute {name!r}")
