"""Backing resources Conveyor provisions per environment: PostgreSQL databases and their logins (ADR 0013)."""
