#!/usr/bin/env bash
# Extending mmrep, example (c): a network of one's own (docs/examples/my_encoder.py, outside the package)
# trained by `mmrep train`, exported, loaded by load_encoder, evaluated by `mmrep evaluate` and used by
# `mmrep policy train`.
# Usage: bash docs/examples/own_encoder.sh [WORKDIR]     (about a minute on 2 CPU cores)
set -euo pipefail
W=${1:-/tmp/mmrep_own_encoder}
export PYTHONPATH="$(cd "$(dirname "$0")" && pwd)${PYTHONPATH:+:$PYTHONPATH}"  # makes `my_encoder` importable

mmrep collect episodes=4 workers=1 out="$W/data" env.image_size=64 env.max_steps=30 progress=false
# model.encoder_target names the class; heads that need the RGB feature maps (flow) are off
mmrep train data="$W/data" out="$W/run" epochs=1 batch_size=16 max_batches_per_epoch=4 num_workers=0 threads=1 \
    progress=false model.encoder_target=my_encoder.TinyEncoder model.depth=false model.force=false model.flow=false
# the encoder file records the class: load_encoder rebuilds a TinyEncoder
python - "$W/run/encoder.pt" <<'PY'
import sys
import numpy as np
from mmrep.encoder import load_encoder
enc = load_encoder(sys.argv[1])
assert type(enc.net).__name__ == "TinyEncoder", type(enc.net)
obs = {"rgb": np.zeros((64, 64, 3), np.uint8), "proprio": np.r_[0.5, 0, 0.2, 0, 0, 0, 1, np.zeros(6)]}
print("z", tuple(enc.encode(obs).shape))
PY
# the robustness evaluation builds the same network from the run's config
mmrep evaluate "runs=[$W/run]" data="$W/data" out="$W/eval" split=all episodes=2 calibration_episodes=1 \
    progress=false "perturbations=[proprio/gaussian_noise]" "levels=[0.0,0.5]"
mmrep policy train obs=latent_proprio obs.encoder="$W/run/encoder.pt" out="$W/policy" total_steps=32 \
    algo=ppo algo.params.n_steps=16 algo.params.batch_size=16 algo.params.n_epochs=1 vec_env=dummy \
    eval_episodes=1 eval_every_steps=32 ckpt_every_steps=32 progress=false \
    env.max_steps=8 env.physics_hz=240.0 env.image_size=64
