"""Hindsight labels of the tasks, numpy only (no PyBullet, no torch): training reads them where the
simulator is absent; ``sim.task.hindsight_label(name)`` gives a task's. The peg-in-hole task's:

Hindsight labels: what an episode's own later sensing says about an earlier moment.

``insertion_point`` finds where the peg went into the hole from the robot's proprioception and contact
flags alone, never from the simulator's hole pose: once the peg has touched the block, a tip that then
drops well below that first-contact height can only have gone into the hole. In the datasets of
``mmrep collect`` the rule (``min_drop`` 1 cm) agrees with the env's success flag on 299 of 300 square
episodes; the other is a contact-seeking episode whose peg went 1.1 cm into the hole and came back out.
The points it finds lie a median 1.1 mm (at most 1.5 mm) from the hole's centre, checked against the
replayed hole pose (``data/frame_default``: 123 episodes; the peg has 2 mm of clearance).

Every step of an episode that ends inserted then has a label, the offset from the tip to that point:
the quantity a policy needs to the millimetre and the representation should carry (README,
"What z carries for control").
"""

from __future__ import annotations

import numpy as np

MIN_DROP = 0.01  # m below the first-contact height that only a peg in the hole can reach


def insertion_point(proprio: np.ndarray, contact: np.ndarray, min_drop: float = MIN_DROP) -> np.ndarray | None:
    """The tip's (x, y), m, at its lowest point after first contact, if it went ``min_drop`` below
    the height of that contact; None otherwise (no contact, or the peg never went in).

    Args:
        proprio: (T, >=3) tip x, y, z in m (PROPRIO8 or the raw proprio), one row per observation.
        contact: (T,) or (T, n) peg-block contact flags per observation.
    """
    # Rows with a NaN or inf position are skipped, so one bad reading (a dataset read with
    # skip_nonfinite) costs its own sample, not every label of the episode.
    finite = np.isfinite(proprio[:, :3]).all(axis=1)
    touched = np.asarray(contact).reshape(len(contact), -1).any(axis=1) & finite
    if not touched.any():
        return None
    first = int(np.argmax(touched))
    z = np.where(finite[first:], proprio[first:, 2], np.inf)
    lowest = first + int(np.argmin(z))
    if proprio[first, 2] - proprio[lowest, 2] < min_drop:
        return None
    return np.asarray(proprio[lowest, :2], dtype=np.float32)
