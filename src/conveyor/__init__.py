"""Conveyor: a release control plane. See docs/ for the user guide and ARCHITECTURE for the map."""

__version__ = "0.1.0"
