"""The ``mmate-gen`` console script.

It checks that the generator's own dependencies (the ``gen`` extra) are installed before importing
the generator, so a runtime-only install gets one clear line instead of a traceback."""

from __future__ import annotations

import importlib
import sys

# module name -> distribution name, for the message
GEN_DEPENDENCIES = {
    "jinja2": "jinja2",
    "yaml": "pyyaml",
    "datamodel_code_generator": "datamodel-code-generator",
    "ruff": "ruff",
}


def missing_dependencies() -> list[str]:
    """The distributions of the ``gen`` extra that cannot be imported here."""
    missing = []
    for module, dist in GEN_DEPENDENCIES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(dist)
    return missing


def main() -> int:
    missing = missing_dependencies()
    if missing:
        print(
            f"mmate-gen: the generator needs {', '.join(missing)}, which are not installed; "
            "install the generator with: pip install 'mmate[gen]'",
            file=sys.stderr,
        )
        return 2
    from .cli import main as cli_main

    return cli_main()
