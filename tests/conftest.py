import importlib.util
import json
import os
import signal
import time
from pathlib import Path

import gymnasium as gym
import pytest

import sim  # noqa: F401  (registers the env ids)
from sim.collect import CollectConfig, collect

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module (the benchmarks folder is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def collect_small(out, episodes: int, max_steps: int):
    """A small 64x64 dataset of contact-rich episodes (noisy expert + contact seeking), one worker."""
    collect(CollectConfig(episodes=episodes, out=str(out), env={"max_steps": max_steps, "image_size": 64},
                          workers=1, policies={"noisy_expert": 1.0, "contact_seeking": 1.0}), progress=False)
    return out


def kill_at_step(proc, run, step: int, group: bool = False, timeout: float = 300) -> None:
    """SIGKILL a training process (``group``: its whole process group, e.g. torchrun and its ranks) once
    ``run/last.pt`` has reached ``step``; fails if it finished first."""
    from mmrep.train import load_checkpoint

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            if json.loads(load_checkpoint(run / "last.pt")["state"])["step"] >= step:
                break
        except (FileNotFoundError, RuntimeError, EOFError, KeyError):
            pass  # not written yet, or being replaced
    assert proc.poll() is None, "training finished before it could be killed"
    if group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs) for every Ray test of the session."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_worker_niceness", "0")  # as sim.collect_ray.init_ray starts one
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, namespace="mmrep")
    yield ray
    ray.shutdown()


@pytest.fixture
def make_env():
    """Factory that closes every env it made at the end of the test."""
    made = []

    def _make(env_id: str = "mmrep/PegInsertion-v0", **kwargs):
        env = gym.make(env_id, **kwargs)
        made.append(env)
        return env

    yield _make
    for env in made:
        env.close()


@pytest.fixture(scope="session")
def small_encoder(tmp_path_factory):
    """An untrained encoder file for 64 x 64 images, z of 8 (seeded): what tests that only need a frozen
    encoder to load, encode or export use."""
    import torch

    from mmrep.encoder import export_encoder
    from mmrep.models import ModelConfig
    from mmrep.models.multimodal import MultimodalEncoder

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / "encoder.pt"
    export_encoder(MultimodalEncoder(ModelConfig(image_size=64, z_dim=8)), path)
    return path
