"""The package version, in one place: pyproject.toml reads it (dynamic version) and the package re-exports it."""

__version__ = "0.3.0"
