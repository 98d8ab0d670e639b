"""``python -m infraprof`` runs the command-line interface."""

from __future__ import annotations

from infraprof.cli import main

if __name__ == "__main__":
    main()
