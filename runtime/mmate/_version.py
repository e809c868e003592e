"""The version of the mmate distribution (runtime and generator), in one place.

pyproject.toml reads it (hatch dynamic version); ``mmate.__version__`` and ``mmate-gen --version``
print it."""

__version__ = "0.1.0"
