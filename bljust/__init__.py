"""bljust: semi-supervised ASR by penalty-based bilevel joint training (BL-JUST) and its baselines."""

__version__ = "0.1.0"
