"""The ground every package may import: settings, errors, safe CSV writing."""

__version__ = "0.1.0"
