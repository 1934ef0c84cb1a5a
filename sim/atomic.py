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


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove ``atomic_path`` temporaries in ``folder`` and its subfolders (one level) whose writing
    process is gone (a SIGKILL mid-write leaves them; nothing else does). Call it holding the folder's
    run lock, so that no live run of this folder is writing. Returns what was removed."""
    removed = []
    for tmp in [*Path(folder).glob("*.tmp*"), *Path(folder).glob("*/*.tmp*")]:
        match = _TEMPORARY.search(tmp.name)
        if not match or not tmp.is_file():
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # its process still runs (another machine's pid cannot be told apart: left)
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
