"""Text generator families: ``text/gpt`` (a small decoder-only transformer trained from scratch)."""
