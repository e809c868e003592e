"""The distribution's shape: the runtime works without the generator's dependencies (the ``gen``
extra), ``mmate-gen`` says what to install when they are missing, and the version lives in one
place."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import mmate

import mmate_gen

# A process in which the generator's dependencies cannot be imported, as after `pip install mmate`.
BLOCK_GEN = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {"jinja2", "yaml", "datamodel_code_generator", "ruff"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Block())
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_GEN + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_runtime_module_and_the_generated_code_import_without_the_gen_extra() -> None:
    result = _run(
        """
        import pkgutil, importlib, mmate
        names = [
            m.name for m in pkgutil.walk_packages(mmate.__path__, "mmate.")
            if not m.name.endswith("__main__")
        ]
        for name in names:
            importlib.import_module(name)
        import generated, generated.order_service, generated.models
        print(len(names))
        """
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 40


def test_a_service_runs_on_the_runtime_alone() -> None:
    result = _run(
        """
        import asyncio, mmate
        from generated import order_service, topology
        async def main():
            async with mmate.Client("memory://packaging", service="order-service") as client:
                await client.declare(topology.ORDER_SERVICE)
            print("ok")
        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_mmate_gen_without_the_gen_extra_names_what_to_install() -> None:
    result = _run(
        """
        import sys
        from mmate_gen.entry import main
        sys.exit(main())
        """
    )
    assert result.returncode == 2
    assert "pip install 'mmate[gen]'" in result.stderr
    assert "jinja2" in result.stderr and "Traceback" not in result.stderr


def test_one_version_everywhere() -> None:
    assert mmate.__version__ == mmate_gen.__version__ == importlib.metadata.version("mmate")
