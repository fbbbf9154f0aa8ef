"""ffneuro: a neuromorphic-style on-chip learning simulator for Forward-Forward."""

__version__ = "0.1.0"
