"""Pure renderers: ``Report -> str``. No analysis, no I/O."""
