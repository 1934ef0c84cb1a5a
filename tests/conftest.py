import gymnasium as gym
import pytest

import sim  # noqa: F401  (registers the env ids)
from sim.collect import CollectConfig, collect


def collect_small(out, episodes: int, max_steps: int):
    """A small 64x64 dataset of contact-rich episodes (noisy expert + contact seeking), one worker."""
    collect(CollectConfig(episodes=episodes, out=str(out), env={"max_steps": max_steps, "image_size": 64},
                          workers=1, policies={"noisy_expert": 1.0, "contact_seeking": 1.0}), progress=False)
    return out


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
