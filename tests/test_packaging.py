"""The package as a user installs it: a built wheel (not editable) runs every command from another folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this tree, installed (without dependencies: they are this venv's) into a folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp / "dist"), str(ROOT)], check=True, capture_output=True)
    wheels = list((tmp / "dist").glob("mmrep-*.whl"))
    assert len(wheels) == 1
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheels[0])], check=True, capture_output=True)
    return target


def _run(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("MMREP_CONFIG_DIR", None)
    return subprocess.run([sys.executable, "-m", "mmrep.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_wheel_ships_the_configs_and_runs_collect_train_verify(installed, tmp_path):
    where = _run(installed, tmp_path, "data", "--help")
    assert where.returncode == 0
    env = {**os.environ, "PYTHONPATH": str(installed)}
    probe = subprocess.run([sys.executable, "-c", "import mmrep, mmrep.config as c; print(mmrep.__file__); "
                            "print(c.config_dir())"], cwd=tmp_path, env=env, capture_output=True, text=True)
    module_file, configs = probe.stdout.split()
    assert module_file.startswith(str(installed)) and configs.startswith(str(installed)), probe.stdout
    done = _run(installed, tmp_path, "collect", "episodes=3", "workers=1", "env.image_size=64",
                "env.max_steps=12", "out=ds", "progress=false")
    assert done.returncode == 0, done.stderr
    assert _run(installed, tmp_path, "data", "verify", "ds").returncode == 0
    trained = _run(installed, tmp_path, "train", "data=ds", "out=run", "epochs=1", "batch_size=8",
                   "max_batches_per_epoch=2", "threads=1", "progress=false")
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "run" / "encoder.pt").exists()
