"""Atomic file writes, defined once: a kill at any moment leaves the old file or the new one, never
half of one. numpy-free and torch-free (the dataset manifest, generated assets, checkpoints and encoder
files all go through here)."""

from __future__ import annotations

import os
import re
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


_TEMPORARY = re.compile(r"\.(\d+)\.tmp(\.[^.]*)?$")  # atomic_path's "<stem>.<pid>.tmp<suffix>"


def remove_stale_temporaries(folder: str | Path, lock_name: str, min_age_s: float = 600.0) -> list[Path]:
    """Remove ``atomic_path`` temporaries that a process killed mid-write left in ``folder`` (and in its
    subfolders without a run lock ``lock_name`` of their own, e.g. ``best/``): those whose process is
    gone from this machine and that nothing has written to for ``min_age_s``. The age keeps the files
    of a writer on another machine of a shared filesystem, whose pid means nothing here. Call it
    holding ``folder``'s run lock. Returns what was removed."""
    import time

    folder = Path(folder)
    subfolders = [d for d in folder.iterdir() if d.is_dir() and not (d / lock_name).exists()]
    removed = []
    for tmp in [*folder.glob("*.tmp*"), *(t for d in subfolders for t in d.glob("*.tmp*"))]:
        match = _TEMPORARY.search(tmp.name)
        if not match or not tmp.is_file():
            continue
        try:
            if time.time() - tmp.stat().st_mtime < min_age_s:
                continue  # written to lately: perhaps by a live process on another machine
            os.kill(int(match.group(1)), 0)
            continue  # its process still runs
        except ProcessLookupError:
            pass
        except (OSError, OverflowError):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
