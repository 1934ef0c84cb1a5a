"""``save_atomic``: ``torch.save`` through ``sim.atomic`` (checkpoints, encoder and policy files)."""

from __future__ import annotations

from pathlib import Path

import torch

from sim.atomic import atomic_path


def save_atomic(obj: dict, path: str | Path) -> None:
    """``torch.save`` so that a kill at any moment leaves the old or the new file, never half of one."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
