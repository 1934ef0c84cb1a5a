"""Atomic file writes, defined once: a kill at any moment leaves the old file or the new one, never
half of one. numpy-free and torch-free (the dataset manifest, generated assets, checkpoints and encoder
files all go through here)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to inside the ``with`` block; on leaving it, the file
    is flushed to disk (``fsync``) and renamed onto ``path``; on an error it is removed and ``path`` is
    left as it was. The temporary name keeps ``path``'s suffix (``np.savez`` adds ``.npz`` otherwise)
    and holds the process id, so processes writing the same file do not collide."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str, fsync: bool = True) -> None:
    """Write ``text`` to ``path`` atomically (``atomic_path``)."""
    with atomic_path(path, fsync) as tmp:
        tmp.write_text(text)
