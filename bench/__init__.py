"""bench: a few-shot adaptation benchmark for CLIP models (CoOp protocol)."""

__version__ = "0.1.0"
