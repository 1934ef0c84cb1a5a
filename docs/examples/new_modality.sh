#!/usr/bin/env bash
# Extending mmrep, example (a): a new modality (docs/examples/joints_modality.py) collected, trained on,
# loaded and used by `mmrep policy train`. Usage: bash docs/examples/new_modality.sh [WORKDIR]  (about a minute)
set -euo pipefail
W=${1:-/tmp/mmrep_new_modality}
export PYTHONPATH="$(cd "$(dirname "$0")" && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # makes `joints_modality` importable

mmrep collect episodes=4 workers=1 out="$W/data" env.image_size=64 env.max_steps=30 progress=false
mmrep train data="$W/data" out="$W/run" epochs=1 batch_size=16 max_batches_per_epoch=4 num_workers=0 threads=1 \
    progress=false "model.plugins=[joints_modality]" "model.extra_modalities=[joints]"
python - "$W/run/encoder.pt" <<'PY'
import sys
import gymnasium as gym
from mmrep.encoder import load_encoder
from sim.config import EnvConfig
enc = load_encoder(sys.argv[1])  # its config names the plug-in: importing it registers "joints"
assert enc.cfg.modalities[-1] == "joints" and "joints" in enc.encoders, enc.cfg.modalities
env = gym.make("mmrep/PegInsertion-v0", config=EnvConfig(image_size=64, plugins=["joints_modality"],
                                                         extra_observations=["joints"]))
obs, _ = env.reset(seed=0)
print("joints", obs["joints"].shape, "z", tuple(enc.encode(obs).shape), "joints alone", tuple(enc.encode({"joints": obs["joints"]}).shape))
env.close()
PY
mmrep policy train obs=latent_proprio obs.encoder="$W/run/encoder.pt" out="$W/policy" total_steps=32 \
    algo=ppo algo.params.n_steps=16 algo.params.batch_size=16 algo.params.n_epochs=1 vec_env=dummy \
    eval_episodes=1 eval_every_steps=32 ckpt_every_steps=32 progress=false \
    env.max_steps=8 env.physics_hz=240.0 env.image_size=64 "env.plugins=[joints_modality]" "env.extra_observations=[joints]"
