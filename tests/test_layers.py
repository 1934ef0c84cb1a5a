"""Layering: ``sim`` never imports torch or mmrep (DESIGN.md, "Layers")."""

import subprocess
import sys


def test_sim_does_not_import_torch_or_mmrep():
    code = ("import sys, sim, sim.policies, sim.flow, sim.camera; "
            "print(any(m == 'torch' or m.startswith('torch.') or m == 'mmrep' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
