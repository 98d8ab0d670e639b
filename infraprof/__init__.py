"""infraprof: why is my GPU program slow, with evidence, and did it get slower?"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
