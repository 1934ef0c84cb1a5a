"""A trained policy as ONNX, its observation normaliser folded in: ``mmrep policy export``.

    mmrep policy export policy=runs/policy [out=runs/policy/policy.onnx]

The graph (``obs`` in, ``action`` out, batch axis dynamic) computes what ``mmrep policy eval`` does with a
mean action: ``clip((obs - mean) / sqrt(var + 1e-8), -5, 5)`` (SB3's ``VecNormalize``), the actor's mean
action (PPO, TRPO: the Gaussian's mean clipped to the action space; SAC: the squashed mean), for the
policy's observation vector: with the latent kinds, ``[z_mean, proprio]`` (``mmrep.rl.latent``; z from
the encoder's ONNX graph, ``mmrep export-encoder --format onnx``). The file's metadata names the
observation kind, the encoder file, the env config and the observation layout. Recurrent policies
(``recurrent_ppo``) and the camera memory are not exported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmrep.formats.encoder_export import OPSET

EPSILON = 1e-8  # VecNormalize's
CLIP_OBS = 5.0


class OnnxPolicy(nn.Module):
    """Normaliser + deterministic actor of an SB3 policy, as one module."""

    def __init__(self, model, obs_rms) -> None:
        super().__init__()
        self.policy = model.policy
        self.sac = hasattr(self.policy, "actor") and not hasattr(self.policy, "action_net")
        dim = int(np.prod(model.observation_space.shape))
        mean = np.zeros(dim) if obs_rms is None else obs_rms.mean
        var = np.ones(dim) - EPSILON if obs_rms is None else obs_rms.var
        self.normalise = obs_rms is not None
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("inv_std", torch.as_tensor(1.0 / np.sqrt(var + EPSILON), dtype=torch.float32))
        space = model.action_space
        self.register_buffer("low", torch.as_tensor(space.low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(space.high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs
        if self.normalise:
            x = torch.clamp((obs - self.mean) * self.inv_std, -CLIP_OBS, CLIP_OBS)
        if self.sac:
            a = self.policy.actor(x, deterministic=True)
            return self.low + 0.5 * (a + 1.0) * (self.high - self.low)  # SB3's unscale_action
        features = self.policy.extract_features(x, self.policy.pi_features_extractor)
        latent = self.policy.mlp_extractor.forward_actor(features)
        return torch.maximum(torch.minimum(self.policy.action_net(latent), self.high), self.low)


def export_policy(policy: str | Path, out: str | Path | None = None) -> Path:
    """Write the run's (or file's) ``policy.pt`` as ONNX (default ``policy.onnx`` beside it); return the path."""
    from mmrep.policy import load_policy

    path = Path(policy)
    path = path / "policy.pt" if path.is_dir() else path
    model, venv, cfg, rms = load_policy(path)
    try:
        if cfg.algo.name == "recurrent_ppo":
            raise ValueError(f"{path}: recurrent policies are not exported to ONNX (their state is not an input)")
        shape = model.observation_space.shape
        if shape is None or len(shape) != 1:
            raise ValueError(f"{path}: only vector observations are exported (this policy observes {cfg.obs.kind!r})")
        wrapper = OnnxPolicy(model, rms).eval()
        out = Path(out) if out else path.with_suffix(".onnx")
        example = torch.zeros(1, shape[0])
        with torch.no_grad():
            torch.onnx.export(wrapper, (example,), str(out), input_names=["obs"], output_names=["action"],
                              dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}}, opset_version=OPSET,
                              dynamo=False)
    finally:
        venv.close()
    import onnx

    onnx_model = onnx.load(str(out))
    onnx.checker.check_model(onnx_model)
    proprio = "proprio8 (PROPRIO8)" if cfg.obs.proprio == 8 else "proprio (PROPRIO13)"
    layout = ["z_mean"] + ([proprio] if cfg.obs.kind == "latent_proprio" else [])
    meta = {"format": "mmrep-policy-onnx-1", "algo": cfg.algo.name, "obs_kind": cfg.obs.kind,
            "encoder": str(cfg.obs.encoder or ""), "env_config": json.dumps(_env_dict(cfg.env)),
            "obs_layout": json.dumps(layout if cfg.obs.kind.startswith("latent") else [cfg.obs.kind]),
            # how z was encoded in training: a runtime feeding z must encode it the same way
            "z_encoding": json.dumps({"camera_memory": cfg.obs.camera_memory,
                                      "reject_flagged": cfg.obs.reject_flagged})}
    for k, v in meta.items():
        onnx_model.metadata_props.add(key=k, value=v)
    onnx.save(onnx_model, str(out))
    return out


def _env_dict(env) -> dict:
    from dataclasses import asdict, is_dataclass

    return asdict(env) if is_dataclass(env) else dict(env)


def main(argv: list[str]) -> int:
    words = [f"--{w.split('=', 1)[0]}={w.split('=', 1)[1]}" if "=" in w and not w.startswith("-") else w
             for w in argv]
    p = argparse.ArgumentParser(prog="mmrep policy export", description=__doc__.splitlines()[0])
    p.add_argument("--policy", required=True, help="a policy run folder or its policy.pt")
    p.add_argument("--out", help="the .onnx file (default: policy.onnx beside policy.pt)")
    args = p.parse_args(words)
    try:
        out = export_policy(args.policy, args.out)
    except (ValueError, FileNotFoundError, OSError, ImportError) as err:
        print(f"mmrep policy export: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
