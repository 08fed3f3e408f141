"""infergate model server: serves a model only after its golden inputs pass."""
