"""mmate-gen: turns mmate YAML specs into typed Python (models, publishers, handlers, topology)."""

__version__ = "0.1.0"
