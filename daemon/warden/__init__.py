"""Warden: keeps the cost of development workspaces under control."""

__version__ = "0.1.0"
