"""Alembic's script directory for Warden's schema (a package so that it ships in wheels)."""
