"""Regression gate: compare runs against a baseline with real statistics."""
