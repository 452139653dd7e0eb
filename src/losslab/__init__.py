"""losslab: study and exploit the loss landscape of neural networks."""

__version__ = "0.1.0"
