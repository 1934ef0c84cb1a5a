"""Pictures of the data, defined once: the colour coding of optical flow (the demo, the training
pictures in TensorBoard). numpy and matplotlib only."""

from __future__ import annotations

import numpy as np


def flow_to_rgb(flow: np.ndarray, max_px: float | None = None) -> np.ndarray:
    """Colour-code a (H, W, 2) flow (pixels): hue is direction, brightness is magnitude, full at
    ``max_px`` (default: the largest). Returns (H, W, 3) uint8 RGB. The one colour coding of flow
    (the demo, the training pictures)."""
    from matplotlib.colors import hsv_to_rgb  # imported when a picture is drawn

    mag = np.linalg.norm(flow, axis=-1)
    scale = max_px if max_px is not None else max(float(mag.max()), 1e-6)
    hsv = np.stack([(np.arctan2(flow[..., 1], flow[..., 0]) / (2 * np.pi)) % 1.0,
                    np.ones_like(mag), np.clip(mag / scale, 0, 1)], axis=-1)
    return (hsv_to_rgb(hsv) * 255).astype(np.uint8)
