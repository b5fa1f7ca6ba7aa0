"""clickloop: a self-hosted conversion tracker (clicks, Keitaro-compatible postbacks, S2S)."""

__version__ = "0.1.0"
