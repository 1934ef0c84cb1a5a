"""``python -m mmrep.reliability ENCODER DATA``: set an encoder file's reliability thresholds from a
dataset's clean validation samples. The thresholds and their arithmetic (``Reliability``,
``calibrate``, ``collect_logvars``) live in ``mmrep.models.reliability`` and import from here too."""

from __future__ import annotations

import torch

from mmrep.data.dataset import MultimodalDataset
from mmrep.encoder import export_encoder, load_encoder
from mmrep.models.reliability import (  # noqa: F401  (the old import path)
    FLAG_QUANTILE,
    LOW_QUANTILE,
    Reliability,
    calibrate,
    collect_logvars,
)


def calibrate_encoder_file(encoder_path: str, data: str, batches: int = 120, batch_size: int = 32,
                           quantile: float = FLAG_QUANTILE, seed: int = 0,
                           low_quantile: float | None = LOW_QUANTILE) -> Reliability:
    """Set the reliability thresholds of an encoder file (one exported before they existed) from the
    clean samples of a dataset's validation split (the first ``batches`` x ``batch_size``, in order),
    and write them into the file (atomically: the old file or the new one, never half of one)."""
    encoder = load_encoder(encoder_path)
    if encoder.cfg.fusion != "poe":
        raise ValueError(f"{encoder_path}: fusion {encoder.cfg.fusion!r} has no trained expert variances; "
                         "reliability thresholds are for the product of experts")
    ds = MultimodalDataset(data, "valid", seed=seed)
    n = min(len(ds), batches * batch_size)

    def model_batches():
        for i in range(0, n, batch_size):
            items = [ds[j] for j in range(i, min(n, i + batch_size))]
            yield {k: torch.stack([it[k] for it in items]) for k in encoder.cfg.modalities}

    reliability = calibrate(collect_logvars(encoder, model_batches()), quantile, low_quantile)
    export_encoder(encoder, encoder_path, reliability)
    return reliability


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(description="Set an encoder file's reliability thresholds from a dataset's "
                                             "clean validation samples (python -m mmrep.reliability ENCODER DATA).")
    ap.add_argument("encoder", help="an encoder.pt of the product of experts")
    ap.add_argument("data", help="dataset folder (its validation split is used)")
    ap.add_argument("--batches", type=int, default=120)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--quantile", type=float, default=FLAG_QUANTILE)
    ap.add_argument("--low-quantile", type=float, default=LOW_QUANTILE,
                    help="lower thresholds at this quantile of the clean values (two-sided flags); 0: one-sided")
    args = ap.parse_args(argv)
    try:
        rel = calibrate_encoder_file(args.encoder, args.data, args.batches, args.batch_size, args.quantile,
                                     low_quantile=args.low_quantile or None)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"mmrep.reliability: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.encoder}: thresholds {rel.to_json()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
