"""Shared torch parts (Trainer, layers) for the neural generator families."""
