import gymnasium as gym
import pytest

import sim  # noqa: F401  (registers the env ids)


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
