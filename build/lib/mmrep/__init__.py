"""mmrep, the learning side: datasets, the multimodal representation, training, encoders."""


def load_encoder(path, device="cpu"):
    """Load a trained encoder (see ``mmrep.encoder.load_encoder``)."""
    from mmrep.encoder import load_encoder as _load

    return _load(path, device)


__all__ = ["load_encoder"]
