"""``python -m synthkit`` runs the CLI."""

from synthkit.cli import main

main()
