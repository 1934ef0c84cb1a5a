"""Every committed encoder (benchmarks/results/**/encoders/*.pt) still loads and gives bitwise the
outputs it gave when it was recorded (``tests/encoder_outputs.py``, recorded on the tree before the
encoder wrapper and the modality registry): refactors of the model code must not change a number."""

from __future__ import annotations

import json

import pytest
from encoder_outputs import RECORD, ROOT, encoder_files, outputs

RECORDED = json.loads(RECORD.read_text())


def test_every_committed_encoder_is_recorded():
    assert sorted(str(p.relative_to(ROOT)) for p in encoder_files()) == sorted(RECORDED)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_committed_encoder_outputs_are_bitwise_unchanged(name):
    assert outputs(ROOT / name) == RECORDED[name]
