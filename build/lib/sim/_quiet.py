"""Import PyBullet without the "pybullet build time" banner its C code writes to stderr."""

from __future__ import annotations

import ctypes
import io
import os
import sys


def import_pybullet_quietly() -> None:
    if "pybullet" in sys.modules:
        return
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):  # stderr replaced (pytest capture)
        import pybullet  # noqa: F401
        return
    sys.stderr.flush()
    saved, devnull = os.dup(fd), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    try:
        import pybullet  # noqa: F401
    finally:
        try:  # drop anything C's stdio still buffers for the redirected descriptor
            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):
            pass
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)
