"""mmate-gen: turns mmate YAML specs into typed Python (models, publishers, handlers, topology).

Installed with the ``gen`` extra (``pip install 'mmate[gen]'``); a service that only runs generated
code needs the runtime alone (``pip install mmate``)."""

from mmate._version import __version__

__all__ = ["__version__"]
