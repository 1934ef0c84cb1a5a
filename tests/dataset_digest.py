"""The sha256 of a small dataset collected from a fixed seed: every episode's arrays (names, dtypes, shapes,
bytes) and attributes, in sorted order; the manifest and split masks are left out (the split rule changed
on purpose: docs/reliability.md). Run as a script with a tree's own ``mmrep.cli`` on ``sys.path`` to take
the digest of that tree:

    python tests/dataset_digest.py OUT_DIR     # prints the digest

``tests/test_dataset_bytes.py`` compares this tree's digest with the one the tree before tasks,
modalities and encoders became plug-ins gave (commit a0db715).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

# Small but every recorder path: the camera on (RGB-D, flow), every default collection policy, 3 shapes.
COLLECT_ARGS = ["episodes=8", "workers=1", "seed=11", "env.image_size=32", "env.physics_hz=240.0",
                "env.max_steps=40", "env.compute_flow=true", "shapes=[square,round,triangle]"]


def dataset_digest(root: str | Path) -> str:
    """sha256 over the ``data/`` group (the episodes) of every shard under ``root``: its datasets and
    attributes by name."""
    h = hashlib.sha256()

    def visit(name: str, obj) -> None:
        if not name.startswith("data/"):
            return
        h.update(name.encode())
        for k in sorted(obj.attrs):
            h.update(k.encode() + repr(np.asarray(obj.attrs[k]).tolist()).encode())
        if isinstance(obj, h5py.Dataset):
            a = obj[()]
            h.update(f"{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes())

    for shard in sorted(Path(root).rglob("*.h5")):
        with h5py.File(shard, "r") as f:
            f.visititems(visit)
    return h.hexdigest()


def collect(out: str | Path, cwd: str | Path | None = None) -> str:
    """Collect ``COLLECT_ARGS`` into ``out`` with ``python -m mmrep.cli`` run in ``cwd`` (a tree's root)."""
    subprocess.run([sys.executable, "-m", "mmrep.cli", "collect", *COLLECT_ARGS, f"out={out}"], cwd=cwd,
                   check=True, capture_output=True, text=True)
    return dataset_digest(out)


if __name__ == "__main__":
    print(collect(Path(sys.argv[1]).resolve(), cwd=Path.cwd()))
