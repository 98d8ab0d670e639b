"""Pure analyses: ``(trace, params) -> results``; no I/O, no printing."""
