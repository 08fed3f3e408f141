"""infergate model server: serves a model only after its golden inputs pass."""

__version__ = "0.1.0"
