"""Tabular generator families, one per module."""
