"""Cross-cutting parts of the early-warning system: settings, errors, logging and the CLI."""

__version__ = "0.1.0"
