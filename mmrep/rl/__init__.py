"""The representation inside RL agents: latent observation wrappers (``mmrep.rl.latent``, Gymnasium)
and the Stable-Baselines3 integration (``mmrep.rl.sb3``: a vectorised latent wrapper and a features
extractor; needs the ``rl`` extra)."""
