"""One lock per output folder, so two runs never write into the same one (no torch).

``mmrep collect``, ``mmrep train``, ``mmrep policy train``, ``mmrep policy eval`` and ``mmrep evaluate``
hold ``<out>/.run.lock`` for as long as they run. The lock is an ``fcntl.flock`` on that file, so the
kernel lets go of it when its process dies, however it dies: a lock left by a killed run is taken
over by the next one. The file holds who took it (pid, host, command, start time, JSON) so that a
second run is refused with a message naming the running one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sim.atomic import remove_stale_temporaries

LOCK_NAME = ".run.lock"


class FolderBusyError(RuntimeError):
    """Another run holds the folder's lock; the message names it (pid, host, command)."""


def prepare_out_dir(out: str | Path, what: str = "out") -> Path:
    """Create the output folder ``out``; a ValueError naming it when a file is in the way."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{what}={out} is an existing file, not a folder; choose another {what}=")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:  # a parent is a file
        raise ValueError(f"{what}={out}: a part of the path is an existing file ({err.filename})") from None
    return out


def _holder(path: Path) -> str:
    try:
        d = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        d = {}
    if not d:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.get("time", 0)))
    return f"pid {d.get('pid')} on {d.get('host')} since {since} ({d.get('command')})"


@contextlib.contextmanager
def run_lock(out: str | Path, app: str) -> Iterator[Path]:
    """Hold ``out``'s run lock for the ``with`` block (creating ``out``); ``FolderBusyError`` naming the
    running one when another run holds it. Yields the folder."""
    out = prepare_out_dir(out)
    path = out / LOCK_NAME
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FolderBusyError(f"{out} is in use by another run: {_holder(path)}; wait for it to end "
                                  f"or choose another out=") from None
        # Ours now (a killed run's lock went with its process): say who holds it.
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(),
                            "command": f"mmrep {app} " + " ".join(sys.argv[1:])}))
        f.flush()
        remove_stale_temporaries(out, LOCK_NAME)  # half-written files of a run killed mid-write
        try:
            yield out
        finally:
            with contextlib.suppress(OSError):
                f.seek(0)
                f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()
