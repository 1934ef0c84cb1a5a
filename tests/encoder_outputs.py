"""The committed encoders' outputs on fixed inputs: what ``test_committed_encoders`` compares against.

Two records. ``tests/data/committed_encoder_outputs.json``: sha256 hashes of the outputs' bytes, recorded
on the reference CPU (the one earlier sessions and their CI ran on; its ISA is not recorded): a refactor
must not change a bit there. ``tests/data/committed_encoder_outputs.npz``: the outputs themselves, recorded on an
AVX-512 / AMX Xeon (2026-12-06) from the same code. The float kernels torch calls (MKL's GEMM and GEMV,
oneDNN's convolutions) pick their code path by CPU and round differently, so on another CPU the hashes
cannot hold; there the outputs are compared with the recorded values to float32 rounding.
``python tests/encoder_outputs.py`` rewrites the hashes, ``--values`` the values (only do either on a tree
whose outputs are known to be right)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "tests" / "data" / "committed_encoder_outputs.json"
VALUES = RECORD.with_suffix(".npz")
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


def _hash(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def arrays(path: Path) -> dict[str, np.ndarray]:
    """{what: float32 array} for one encoder file: z of the batch (BATCH, latent), z of each sample
    alone, z with one modality left out of two samples, and (when it has them) the expert
    log-variances (experts, BATCH, latent), the reliability flags and z with flagged experts rejected."""
    from mmrep.encoder import load_encoder

    torch.set_num_threads(1)  # the figures must not depend on how the work is split
    enc = load_encoder(path)
    obs = {m: v for m, v in fixed_inputs(enc.image_size).items() if m in enc.cfg.modalities}
    out = {"z": enc.encode(obs), "z_single": enc.encode({m: v[1] for m, v in obs.items()})}
    first = enc.cfg.modalities[0]
    out["z_present"] = enc.encode(obs, present={first: np.array([1, 0, 1, 0], bool)})
    if enc.cfg.fusion == "poe":
        out["expert_logvars"] = torch.stack([v for _, v in sorted(enc.expert_logvars(obs).items())])
    if enc.reliability is not None and enc.reliability.thresholds:
        out["flags"] = torch.stack([v for _, v in sorted(enc.flags(obs).items())])
        out["z_reject"] = enc.encode(obs, reject=True)
    return {k: v.detach().cpu().contiguous().numpy() for k, v in out.items()}


def outputs(path: Path) -> dict[str, str]:
    """{what: sha256 of the output's bytes} of ``arrays(path)``."""
    return {k: _hash(v) for k, v in arrays(path).items()}


def main() -> None:
    if "--values" in sys.argv[1:]:
        values = {f"{p.relative_to(ROOT)}::{k}": v for p in encoder_files() for k, v in arrays(p).items()}
        np.savez_compressed(VALUES, **values)
        print(f"wrote {VALUES} ({len(values)} arrays)", file=sys.stderr)
        return
    record = {str(p.relative_to(ROOT)): outputs(p) for p in encoder_files()}
    RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORD} ({len(record)} encoders)", file=sys.stderr)


if __name__ == "__main__":
    main()
