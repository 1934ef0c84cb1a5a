"""Every committed encoder (benchmarks/results/**/encoders/*.pt) still loads and gives the outputs it
gave when it was recorded (``tests/encoder_outputs.py``, recorded on the tree before the encoder wrapper
and the modality registry): refactors of the model code must not change a number. Re-recorded once
since, when the product of experts stopped returning NaN for inputs far outside training (these fixed
inputs are: noise images, random orientations); every entry that was finite kept its bits, checked
entry by entry before re-recording.

Bitwise on the CPUs the records were made on (the hashes on the reference CPU, the values on an AVX-512
Xeon); on any other CPU torch's kernels round differently (measured 2026-12-06: up to 1e-4 relative,
0.005 on entries of 1200), so there the outputs must equal the recorded values to float32 rounding and
the test says that it could not compare bits."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from encoder_outputs import RECORD, ROOT, VALUES, _hash, arrays, encoder_files, fixed_inputs

RECORDED = json.loads(RECORD.read_text())


def test_every_committed_encoder_is_recorded():
    assert sorted(str(p.relative_to(ROOT)) for p in encoder_files()) == sorted(RECORDED)


def test_every_committed_encoder_has_recorded_values():
    with np.load(VALUES, allow_pickle=False) as values:
        assert sorted({k.split("::")[0] for k in values.files}) == sorted(RECORDED)
        assert all(f"{name}::{what}" in values.files for name, hashes in RECORDED.items() for what in hashes)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_committed_encoder_outputs_are_unchanged(name):
    now = arrays(ROOT / name)
    assert sorted(now) == sorted(RECORDED[name])
    if {k: _hash(v) for k, v in now.items()} == RECORDED[name]:
        return  # bit for bit, on the reference CPU
    with np.load(VALUES, allow_pickle=False) as values:
        recorded = {k: values[f"{name}::{k}"] for k in now}
    if all(np.array_equal(now[k], recorded[k]) for k in now):
        return  # bit for bit, on the CPU the values were recorded on
    for what, value in now.items():
        ref = recorded[what]
        np.testing.assert_allclose(value, ref, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(ref).max())),
                                   err_msg=f"{name}: {what} moved beyond float32 rounding")
    warnings.warn(f"{name}: equal to the recorded outputs to float32 rounding; bits not comparable on this CPU "
                  f"({torch.backends.cpu.get_cpu_capability()})", stacklevel=1)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_committed_encoder_z_is_finite_on_inputs_far_outside_training(name):
    """What the hashes lock in must be numbers: the recorded z were NaN for seven encoders on these
    inputs until the product of experts computed its overflowing entries in log space."""
    from mmrep.encoder import load_encoder

    enc = load_encoder(ROOT / name)
    obs = {m: v for m, v in fixed_inputs(enc.image_size).items() if m in enc.cfg.modalities}
    assert torch.isfinite(enc.encode(obs)).all()
    if enc.reliability is not None and enc.reliability.thresholds:
        assert torch.isfinite(enc.encode(obs, reject=True)).all()
    far = {**obs, **({"proprio": np.zeros_like(obs["proprio"])} if "proprio" in obs else {})}
    assert torch.isfinite(enc.encode(far)).all()  # proprioception of zeros: a log-variance of -763 in one
