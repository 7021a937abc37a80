"""Artifacts: each build registered once, content-addressed and immutable."""
