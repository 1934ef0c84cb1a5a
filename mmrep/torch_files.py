"""Writing and reading mmrep's torch files (checkpoints, encoder and policy files) so that nothing is
half-written and nothing unreadable goes unnamed.

``save_atomic`` serialises in memory first, then writes a ``.tmp`` beside the file, syncs it and
renames it over the file: a kill leaves the old file or the new one, and a full disk leaves the old
one, no ``.tmp``, and an error that says "disk full" and names the file. ``load_torch_file`` loads with
``weights_only=True`` and turns every failure (a truncated zip, random bytes, a refused pickle) into a
``FileLoadError`` naming the file and saying what to do; torch's advice to load with
``weights_only=False`` is never passed on, since that would run the file's code.
"""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any

import torch

from sim.atomic import atomic_path


class FileLoadError(ValueError, RuntimeError):
    """A file cannot be loaded; the message names it and says what to do. (A ValueError for the CLI's
    usage errors, a RuntimeError for callers that caught torch's own.)"""


class DiskFullError(OSError):
    """A file could not be written for lack of space; nothing partial was left behind."""


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` ``obj`` to ``path`` so that a kill at any moment leaves the old or the new file,
    never half of one, and a failed write (disk full) leaves the old file and no ``.tmp``."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(obj, buf)  # in memory: torch's own writer reports a full disk only as "unexpected pos"
    write_atomic(buf.getbuffer(), path)


def write_atomic(data: bytes | memoryview, path: str | Path) -> None:
    """Write ``data`` to ``path`` atomically (``sim.atomic.atomic_path``: a temporary file, fsync, rename);
    ``DiskFullError`` naming the file when the disk is full (the temporary file removed, the old file
    untouched)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            full = DiskFullError(f"disk full: could not write {path} ({len(data) / 2**20:.1f} MiB); the previous "
                                 f"{path.name} (if any) is kept; free space and run the same command to resume")
            full.errno = err.errno
            raise full from None
        raise OSError(f"could not write {path}: {err.strerror}") from None


def _reason(err: BaseException) -> str:
    """What went wrong, in one line, without torch's advice on ``weights_only``."""
    text = str(err)
    if isinstance(err, __import__("pickle").UnpicklingError) or "weights_only" in text:
        return "it holds objects other than tensors and plain data, which mmrep refuses to run"
    if "zip archive" in text or "central directory" in text or isinstance(err, EOFError):
        return "it is truncated or not a torch file"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(err).__name__}: {first[:200]}"


def load_torch_file(path: str | Path, what: str, remedy: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; ``FileNotFoundError`` or ``FileLoadError`` naming the file,
    saying it is ``what`` (e.g. "training checkpoint") that cannot be read and ``remedy`` (what to do)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many kinds (pickle, zip, IndexError, ...) for foreign files
        try:
            with open(path, "rb") as f:
                head = f.read(4)
        except OSError:  # a folder, or unreadable: torch's own reason says which
            head = b"PK"
        # a torch file is a zip archive (or, before torch 1.6, a pickle): anything else is another file
        foreign = head and head[:2] != b"PK" and head[:1] != b"\x80"
        reason = "it is not a torch file" if foreign else _reason(err)
        raise FileLoadError(f"{what} {path} cannot be loaded: {reason}; {remedy}") from None
