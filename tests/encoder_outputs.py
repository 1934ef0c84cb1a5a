"""The committed encoders' outputs on fixed inputs, as hashes: what ``test_committed_encoders``
compares against. ``python tests/encoder_outputs.py`` rewrites ``tests/data/committed_encoder_outputs.json``
(only do that on a tree whose outputs are known to be right)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "tests" / "data" / "committed_encoder_outputs.json"
BATCH = 4


def encoder_files() -> list[Path]:
    return sorted((ROOT / "benchmarks" / "results").glob("**/encoders/*.pt"))


def fixed_inputs(image_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch of ``BATCH`` env observations (rgb uint8, depth m, F/T 50x6, PROPRIO13), seeded."""
    rng = np.random.default_rng(seed)
    quat = rng.normal(size=(BATCH, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    proprio = np.concatenate([rng.uniform(0.3, 0.7, (BATCH, 3)), quat, rng.normal(0, 0.05, (BATCH, 6))], 1)
    return {"rgb": rng.integers(0, 256, (BATCH, image_size, image_size, 3), dtype=np.uint8),
            "depth": rng.uniform(0.5, 1.5, (BATCH, image_size, image_size, 1)).astype(np.float32),
            "force": rng.normal(0, 5, (BATCH, 50, 6)).astype(np.float32),
            "proprio": proprio.astype(np.float32)}


def _hash(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def outputs(path: Path) -> dict[str, str]:
    """{what: sha256 of the output's bytes} for one encoder file: z of the batch, z of each sample
    alone, z with one modality left out of two samples, and (when it has them) the expert
    log-variances, the reliability flags and z with flagged experts rejected."""
    from mmrep.encoder import load_encoder

    torch.set_num_threads(1)  # the figures must not depend on how the work is split
    enc = load_encoder(path)
    obs = {m: v for m, v in fixed_inputs(enc.image_size).items() if m in enc.cfg.modalities}
    out = {"z": _hash(enc.encode(obs)), "z_single": _hash(enc.encode({m: v[1] for m, v in obs.items()}))}
    first = enc.cfg.modalities[0]
    out["z_present"] = _hash(enc.encode(obs, present={first: np.array([1, 0, 1, 0], bool)}))
    if enc.cfg.fusion == "poe":
        out["expert_logvars"] = _hash(torch.stack([v for _, v in sorted(enc.expert_logvars(obs).items())]))
    if enc.reliability is not None and enc.reliability.thresholds:
        out["flags"] = _hash(torch.stack([v for _, v in sorted(enc.flags(obs).items())]))
        out["z_reject"] = _hash(enc.encode(obs, reject=True))
    return out


def main() -> None:
    record = {str(p.relative_to(ROOT)): outputs(p) for p in encoder_files()}
    RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORD} ({len(record)} encoders)", file=sys.stderr)


if __name__ == "__main__":
    main()
