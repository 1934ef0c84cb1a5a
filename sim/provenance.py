"""Where and with what a run ran: the code's commit, the package versions, the machine (no torch import).

Two machines can round the same float kernels differently (the committed encoders' z differs in its last
bits between two x86 CPUs), which sends a closed-loop episode another way now and then. So that a result
that does not reproduce can be traced, ``mmrep policy train`` and ``mmrep train`` append one line of
``provenance()`` to ``<out>/provenance.jsonl`` at each start and resume, and ``mmrep policy eval`` and
``mmrep evaluate`` keep it under ``"provenance"`` in their ``results.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

# the packages whose versions can change a number in a run folder
PACKAGES = ("torch", "numpy", "pybullet", "stable-baselines3", "sb3-contrib", "onnxruntime", "h5py", "gymnasium")
PROVENANCE_FILE = "provenance.jsonl"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    """{distribution: installed version, or None where it is not installed}."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(root: Path, *args: str) -> tuple[str | None, str]:
    """(stdout, or None where git failed or is missing; git's first line of stderr)."""
    try:
        # --no-optional-locks: `git status` would otherwise take the index lock, and a user's own git
        # command running at the same moment could fail on it
        done = subprocess.run(["git", "--no-optional-locks", "-C", str(root), *args], capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as err:
        return None, str(err)
    error = (done.stderr.strip().splitlines() or [""])[0]
    return (done.stdout.strip() if done.returncode == 0 else None), error


@cache
def code_version(root: str | None = None) -> dict[str, Any] | None:
    """The git commit of the checkout this code runs from and whether tracked files differ from it
    (``dirty``); None where the code is not the top of a git checkout (an installed wheel, or a copy
    inside another repository, whose commit would not be this code's); ``{"commit": None, "error":
    ...}`` where it is one but git cannot read it (not installed, a checkout owned by another user).
    Cached: one process runs one tree."""
    here = Path(root) if root else Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return None
    top, error = _git(here, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != here.resolve():
        return {"commit": None, "error": error or f"{here} is not the top of its git checkout"}
    commit, error = _git(here, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "error": error}
    status, _ = _git(here, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def provenance() -> dict[str, Any]:
    """This process's provenance: UTC time, host, CPU model and count, OS, Python, package versions,
    the code's git commit (``code_version``), the torch threads where torch is already imported."""
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "platform": platform.platform(), "python": platform.python_version(),
        "packages": package_versions(), "code": code_version(),
        "command": " ".join(sys.argv),
    }
    torch = sys.modules.get("torch")  # never imported here: sim/ runs without torch
    if torch is not None:
        record["torch_threads"] = torch.get_num_threads()
    return record


def append_provenance(out: str | Path, **extra: Any) -> dict[str, Any]:
    """Append ``provenance()`` (with ``extra``, e.g. the steps done at a resume) as one line to
    ``out/provenance.jsonl``; returns the record."""
    record = {**provenance(), **extra}
    path = Path(out) / PROVENANCE_FILE
    with open(path, "ab+") as f:
        # a line cut by a kill stays alone on its line (read_provenance skips it), not fused with this one
        cut = f.tell() > 0 and (f.seek(-1, 2), f.read(1))[1] != b"\n"
        f.write((b"\n" if cut else b"") + json.dumps(record).encode() + b"\n")
    return record


def read_provenance(out: str | Path) -> list[dict[str, Any]]:
    """The records of ``out/provenance.jsonl``, oldest first ([] where there is none; a line cut by a
    kill is skipped)."""
    path = Path(out) / PROVENANCE_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
