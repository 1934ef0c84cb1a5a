"""An exported encoder and policy on the env, closed loop, with numpy, onnxruntime and the simulator only.

    python docs/examples/onnx_closed_loop.py encoder.onnx policy.onnx [steps]
"""

import json
import sys

import gymnasium as gym
import numpy as np
import onnxruntime as ort

import sim  # noqa: F401  (registers the env ids; numpy and PyBullet, no torch)
from sim.observation import proprio8_from_proprio13

encoder = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
policy = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 20
meta = policy.get_modelmeta().custom_metadata_map  # what the policy observes, and its env
inputs = [i.name for i in encoder.get_inputs()]  # the encoder's modalities: rgb, depth, force, proprio
env = gym.make("mmrep/PegInsertion-v0", **json.loads(meta["env_config"]))
obs, _ = env.reset(seed=0)
for t in range(steps):
    batch = {k: obs[k][None].astype(np.uint8 if k == "rgb" else np.float32) for k in inputs}
    z = encoder.run(["z_mean"], batch)[0]  # (1, z_dim), the posterior mean
    if meta["obs_kind"] == "latent_proprio":  # PROPRIO13 as the env gives it, or PROPRIO8 (obs.proprio=8)
        proprio = proprio8_from_proprio13(obs["proprio"]) if "proprio8" in meta["obs_layout"] else obs["proprio"]
        z = np.concatenate([z, proprio[None].astype(np.float32)], axis=1)
    action = policy.run(["action"], {"obs": z})[0][0]  # normaliser folded in; the mean action
    obs, reward, terminated, truncated, info = env.step(action)
    print(f"step {t:3d}  action {np.round(action, 3)}  reward {reward:7.3f}  success {info.get('is_success', False)}")
    if terminated or truncated:
        break
env.close()
