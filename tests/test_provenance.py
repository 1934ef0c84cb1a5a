"""A run's provenance: the code's commit and the machine, so that a result that does not reproduce can be
traced (two CPUs can round the same kernels differently)."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from sim.provenance import append_provenance, code_version, provenance, read_provenance

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_commit_recorded_is_the_checkout_the_code_runs_from():
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if done.returncode:  # e.g. a checkout owned by another user: then git's reason is recorded
        assert code_version() == {"commit": None, "error": done.stderr.strip().splitlines()[0]}
        return
    head = done.stdout
    changed = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True).stdout
    assert code_version() == {"commit": head.strip(), "dirty": bool(changed.strip())}


def test_outside_a_checkout_there_is_no_commit_nor_the_commit_of_a_repository_around_it(tmp_path):
    assert code_version(str(tmp_path)) is None
    if shutil.which("git") is None:
        return
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    inner = tmp_path / "venv" / "site-packages"  # a copy of the code inside someone else's repository
    inner.mkdir(parents=True)
    assert code_version(str(inner)) is None
    other = tmp_path / "vendored"  # a folder named .git that git does not take for a repository
    (other / ".git").mkdir(parents=True)
    assert code_version(str(other))["commit"] is None


def test_each_start_appends_a_line_and_a_line_cut_by_a_kill_is_skipped(tmp_path):
    record = provenance()
    assert record["cpu"] and record["cpu_count"] >= 1 and record["python"].count(".") == 2
    assert record["packages"]["numpy"] == metadata.version("numpy")
    append_provenance(tmp_path, app="policy train", timesteps=0)
    with open(tmp_path / "provenance.jsonl", "a") as f:
        f.write('{"time": "2026-')  # a kill mid-write
    append_provenance(tmp_path, app="policy train", timesteps=4096)
    assert [r["timesteps"] for r in read_provenance(tmp_path)] == [0, 4096]
    assert json.loads((tmp_path / "provenance.jsonl").read_text().splitlines()[0])["app"] == "policy train"
    assert read_provenance(tmp_path / "missing") == []
