"""Secrets per environment: envelope encryption, versions, rotation and delivery (ADR 0010)."""
