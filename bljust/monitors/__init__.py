"""Label-free monitors (docs/monitors.md): how good an encoder's representations look, without labels.

probe.py picks and loads the probe audio, embed.py runs the encoder on it, clustering.py and
rank.py hold the maths, suite.py combines them, runner.py is what the training loop calls, and
pruning.py stops hopeless sweep runs early.
"""

from bljust.monitors.runner import Monitor

__all__ = ["Monitor"]
