"""Generator families and the registry that names them (see synthkit.generators.registry)."""
