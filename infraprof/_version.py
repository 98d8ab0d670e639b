"""The package version (one place; imported without loading anything else)."""

__version__ = "0.1.0"
