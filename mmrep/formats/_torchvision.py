"""Make ``import torchvision`` work beside a CPU-only torch (LeRobot imports it for its image transforms).

PyPI's torchvision wheels are built against CUDA torch: beside the CPU build their compiled ops
(``torchvision._C``) fail to load (``libc10_cuda.so`` missing), and torchvision's import then stops at
``RuntimeError: operator torchvision::nms does not exist`` when it registers fake kernels for ``nms``
and ``qnms``. LeRobot's dataset code needs only torchvision's pure-Python transforms, so declaring those
two operators' schemas (no kernels: calling them still fails) lets the import finish. Where torchvision
imports by itself this does nothing.
"""

from __future__ import annotations

import sys

_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_LIBRARY = None  # kept alive: the definitions vanish with the Library object


def ensure_torchvision() -> None:
    """Import torchvision, declaring its two missing operator schemas first when its ops did not load."""
    global _LIBRARY
    try:
        import torchvision  # noqa: F401
        return
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the failed import left half-initialised modules behind
    import torch

    _LIBRARY = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        _LIBRARY.define(schema)
    import torchvision  # noqa: F401,F811
