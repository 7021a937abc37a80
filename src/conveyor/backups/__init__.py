"""Backups of each environment's PostgreSQL database, restores, and restore drills (ADR 0016)."""
