"""Prefect deployment definitions."""
