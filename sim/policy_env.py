"""Old home of the RL envs, kept so that existing code imports as before: ``sim.rl_env``
(``make_policy_env`` is ``make_rl_env``)."""

from sim.rl_env import CLOSED_LOOP, make_policy_env, make_rl_env  # noqa: F401
