"""mulinterp — reverse-engineering transformers that (fail to) learn multiplication."""

__version__ = "0.1.0"
