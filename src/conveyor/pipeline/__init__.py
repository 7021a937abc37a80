"""Promotions: pipeline order, gates, approvals and windows."""
