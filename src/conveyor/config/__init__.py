"""Configuration per environment: layered resolution with provenance, runtime overrides, diffs."""
