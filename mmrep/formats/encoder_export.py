"""Encoders that deploy without mmrep: safetensors weights + a JSON config, and an ONNX graph.

``mmrep export-encoder ENCODER --format safetensors`` writes ``<out>.safetensors`` (the weights, with the
format name and the model config in its metadata too) and ``<out>.json`` (the same config, the reliability
thresholds, the inputs). ``mmrep.encoder.load_encoder`` reads the ``.safetensors`` file as it reads
``encoder.pt``.

``--format onnx`` writes ``<out>.onnx``: the frozen encoder on the env's observation dict, batched.

    inputs   rgb     (B, S, S, 3) uint8      camera, HWC
             depth   (B, S, S, 1) float32    m
             force   (B, n, 6)    float32    F/T readings of the last step, N and N m
             proprio (B, 13)      float32    the env's PROPRIO13 (converted to PROPRIO8 inside the graph)
    outputs  z_mean  (B, z)       float32    the posterior mean (what ``Encoder.encode`` returns)
             z_logvar (B, z)      float32    its log-variance (product of experts only)
             logvar_<modality> (B, z)        each expert's log-variance (product of experts only); their
                                             mean over z is ``Encoder.expert_logvars``

Only the encoder's own modalities are inputs; n is fixed at export (``--force-readings``, default 50).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmrep.encoder import FORMAT, Encoder, assert_finite_weights, load_encoder
from mmrep.models.multimodal import MultimodalEncoder
from mmrep.models.network import network_of, target_of
from sim.observation import PROPRIO13_DIM

OPSET = 17
EXPORT_SUFFIXES = (".onnx", ".safetensors", ".json", ".pt")  # ".pt": --out named after the encoder file
"""The suffixes an output path may be given with (replaced); any other dot in its name is kept."""


def output_stem(out: str | Path) -> Path:
    """``out`` without an export suffix (``EXPORT_SUFFIXES``): ``runs/enc.onnx`` -> ``runs/enc``, while
    ``runs/run_v1.5`` stays as it is (``.5`` is part of the name, not a suffix)."""
    out = Path(out)
    return out.with_suffix("") if out.suffix.lower() in EXPORT_SUFFIXES else out


def _with(stem: Path, suffix: str) -> Path:
    """``stem`` + ``suffix``, its parent folder created."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    return stem.with_name(stem.name + suffix)


# ------------------------------------------------------------------------------------- safetensors
def save_safetensors(encoder: Encoder, out: str | Path) -> tuple[Path, Path]:
    """Write ``out.safetensors`` and ``out.json`` (``out`` less an ``EXPORT_SUFFIXES`` suffix; its folder
    created); return both paths."""
    from safetensors.torch import save_file

    out = output_stem(out)
    net = network_of(encoder)  # the network's own names, as in encoder.pt (not the wrapper's ``net.``)
    assert_finite_weights(net, f"encoder for {out}")
    weights = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    config = encoder.cfg.to_dict()
    meta = {"format": FORMAT, "config": json.dumps(config)}
    if type(net) is not MultimodalEncoder:  # a network of the user's own: load_encoder rebuilds its class
        meta["network"] = target_of(net)
    if encoder.reliability is not None:
        meta["reliability"] = encoder.reliability.to_json()
    st, js = _with(out, ".safetensors"), _with(out, ".json")
    save_file(weights, str(st), metadata=meta)
    js.write_text(json.dumps({"format": FORMAT, "weights": st.name, "config": config,
                              "reliability": json.loads(meta["reliability"]) if "reliability" in meta else None,
                              **({"network": meta["network"]} if "network" in meta else {}),
                              "inputs": _input_doc(encoder)}, indent=2))
    return st, js


def _input_doc(encoder: Encoder) -> dict[str, Any]:
    s = encoder.image_size
    doc = {"rgb": [s, s, 3, "uint8"], "depth": [s, s, 1, "float32 m"], "force": ["n", 6, "float32 N, N m"],
           "proprio": [PROPRIO13_DIM, "float32 PROPRIO13"]}
    return {m: doc[m] for m in encoder.cfg.modalities}


# -------------------------------------------------------------------------------------------- onnx
def proprio8_torch(p: torch.Tensor) -> torch.Tensor:
    """(B, 8) PROPRIO8 from (B, 13) PROPRIO13 in torch (``sim.observation.proprio8_from_proprio13``'s
    rule, kept in the graph so a deployment needs no mmrep)."""
    x, y, z, w = p[:, 3], p[:, 4], p[:, 5], p[:, 6]
    # atan2(r10, r00) - pi, wrapped, is atan2(-r10, -r00): no cancellation against pi in float32 (the
    # standardised yaw amplifies rounding; ONNX Runtime has no float64 Atan)
    yaw = torch.atan2(-2 * (x * y + z * w), -(1 - 2 * (y * y + z * z)))
    return torch.cat([p[:, :3], yaw[:, None], p[:, 7:10], p[:, 12:13]], dim=1)


class OnnxEncoder(nn.Module):
    """The encoder on the env's observation layout, for export: (rgb, depth, force, proprio) of its
    modalities in that order -> (z_mean[, z_logvar, logvar_<m>...])."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.modalities = list(encoder.cfg.modalities)
        self.poe = encoder.fuse is None

    def forward(self, *inputs: torch.Tensor):
        batch = {}
        for m, x in zip(self.modalities, inputs):
            if m in ("rgb", "depth"):
                x = x.permute(0, 3, 1, 2)
            batch[m] = proprio8_torch(x) if m == "proprio" else x
        enc = self.encoder
        mus, logvars, _, names = enc.image_experts(batch, self.modalities)
        s_mus, s_logvars, s_names = enc.state_experts(batch, modalities=self.modalities)
        mus, logvars, names = mus + s_mus, logvars + s_logvars, names + s_names
        z, mu, logvar = enc.fuse_experts(mus, logvars, sample=False, names=names)
        if not self.poe:
            return (z,)
        return (mu, logvar, *(lv.float() for lv in logvars))

    def output_names(self) -> list[str]:
        return ["z_mean"] + (["z_logvar"] + [f"logvar_{m}" for m in self.modalities] if self.poe else [])


def example_inputs(encoder: Encoder, batch: int = 2, force_readings: int = 50,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """Random observation tensors in the env's layout for the encoder's modalities."""
    g = torch.Generator().manual_seed(seed)
    s = encoder.image_size
    make = {"rgb": lambda: torch.randint(0, 256, (batch, s, s, 3), generator=g, dtype=torch.uint8),
            "depth": lambda: 0.5 + torch.rand(batch, s, s, 1, generator=g),
            "force": lambda: 5 * torch.randn(batch, force_readings, 6, generator=g),
            "proprio": lambda: torch.randn(batch, PROPRIO13_DIM, generator=g)}
    return {m: make[m]() for m in encoder.cfg.modalities}


def save_onnx(encoder: Encoder, out: str | Path, force_readings: int = 50) -> Path:
    """Write the frozen encoder as ``out.onnx`` (``out`` less an ``EXPORT_SUFFIXES`` suffix; its folder created;
    batch axis dynamic) for ``force_readings`` (>= 1) F/T readings per step; return the path."""
    if isinstance(force_readings, bool) or not isinstance(force_readings, int) or force_readings < 1:
        raise ValueError(f"force_readings (the F/T readings per step) must be a positive integer, "
                         f"got {force_readings!r}")
    out = _with(output_stem(out), ".onnx")
    wrapper = OnnxEncoder(encoder.cpu().eval())
    inputs = example_inputs(encoder, force_readings=force_readings)
    names = list(inputs)
    dynamic = {n: {0: "batch"} for n in names + wrapper.output_names()}
    with torch.no_grad():
        torch.onnx.export(wrapper, tuple(inputs.values()), str(out), input_names=names,
                          output_names=wrapper.output_names(), dynamic_axes=dynamic, opset_version=OPSET,
                          dynamo=False)
    import onnx

    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    meta = {"format": FORMAT, "config": json.dumps(encoder.cfg.to_dict())}
    if encoder.reliability is not None:
        meta["reliability"] = encoder.reliability.to_json()
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(out))
    return out


class OnnxRuntimeEncoder:
    """An ``Encoder``'s z under ONNX Runtime: the graph ``save_onnx`` writes, run on a batched env
    observation dict (numpy, the env's layout). z equals ``Encoder.encode``'s to about 1e-6 (the tests
    hold it to 1e-5); on this CPU about 2x faster than eager torch at batch 1 on one thread
    (``benchmarks/encoder_formats.py``). ``force_readings``: the env's F/T readings per step (fixed in the
    graph); ``threads``: ONNX Runtime's intra-op threads."""

    def __init__(self, encoder: Encoder, force_readings: int = 50, threads: int = 1) -> None:
        import tempfile

        import onnxruntime as ort

        self.modalities = list(encoder.cfg.modalities)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        with tempfile.TemporaryDirectory() as tmp:
            path = save_onnx(encoder, Path(tmp) / "encoder", force_readings)
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.dtypes = {"rgb": "uint8"}

    def __call__(self, obs: dict[str, Any]) -> np.ndarray:
        """(B, z_dim) float32 numpy posterior means of a batched observation dict."""
        feed = {m: np.ascontiguousarray(obs[m], dtype=self.dtypes.get(m, "float32")) for m in self.modalities}
        return self.session.run(["z_mean"], feed)[0]


def export(encoder_path: str | Path, fmt: str, out: str | Path | None = None, force_readings: int = 50) -> list[Path]:
    """``mmrep export-encoder``: the encoder file ``encoder_path`` as ``fmt`` (onnx | safetensors) beside it
    or at ``out`` (an ``EXPORT_SUFFIXES`` suffix replaced, other dots kept; its folder created)."""
    enc = load_encoder(encoder_path)
    out = Path(out) if out else Path(encoder_path).with_suffix("")
    if fmt == "safetensors":
        return list(save_safetensors(enc, out))
    if fmt == "onnx":
        return [save_onnx(enc, out, force_readings)]
    raise ValueError(f"format must be onnx or safetensors, got {fmt!r}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mmrep export-encoder", description=__doc__.splitlines()[0])
    p.add_argument("encoder", help="an encoder file (encoder.pt or .safetensors)")
    p.add_argument("--format", choices=["onnx", "safetensors"], required=True)
    p.add_argument("--out", help="output path (a .onnx, .safetensors or .json suffix replaced; its folder "
                   "created); default: beside the encoder")
    p.add_argument("--force-readings", type=int, default=50, help="onnx: F/T readings per step (n, at least 1)")
    args = p.parse_args(argv)
    if args.force_readings < 1:
        p.error(f"argument --force-readings: must be at least 1 (the F/T readings per step), "
                f"got {args.force_readings}")
    try:
        paths = export(args.encoder, args.format, args.out, args.force_readings)
    except (ValueError, FileNotFoundError, OSError, ImportError) as err:
        print(f"mmrep export-encoder: error: {err}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0

