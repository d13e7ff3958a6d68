"""Preparation: reversible per-column encoders, fillers for non-learned columns, PII handling."""
