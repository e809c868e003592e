"""The whole generated package as a mapping from relative path to file text, built in memory.

``render_all`` is shared by ``mmate-gen build`` (which writes the mapping) and ``--check`` (which
compares it with the disk). Its output depends only on the intermediate model, the templates and the
pinned versions of datamodel-code-generator and ruff: the same specs give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2

from . import __version__
from .diagnostics import SpecError
from .ir import Message, SpecSet
from .jsonschema import message_schema, named_types
from .models import render_models
from .output import SCHEMAS_DIR
from .pyliteral import PyValue, docstring, python_literal
from .ruff import format_all
from .views import SpecIndex, name_clashes, service_view


def templates_dir() -> Path:
    """``mmate_gen/templates`` in an installed wheel, else the repository's ``templates/``."""
    package = Path(__file__).resolve().parent
    installed = package / "templates"
    return installed if installed.is_dir() else package.parent / "templates"


def template_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["py"] = python_literal
    env.filters["mapping"] = _mapping
    env.filters["docstring"] = docstring
    return env


def _mapping(pairs: Iterable[tuple[Any, PyValue]]) -> dict[Any, PyValue]:
    return dict(pairs)


class Renderer:
    def __init__(self, spec: SpecSet, *, stamp_version: bool) -> None:
        self.spec = spec
        self.version = __version__ if stamp_version else None
        self.env = template_env()

    def header(self, spec_files: Iterable[str]) -> str:
        """The do-not-edit line (without comment sign) naming ``spec_files``."""
        text = self.env.get_template("header.jinja").render(
            version=self.version, spec_files=sorted(set(spec_files))
        )
        return text.strip()

    def python_files(self) -> dict[str, str]:
        spec = self.spec
        index = SpecIndex(spec)
        views = [service_view(index, s) for s in spec.services]
        problems = name_clashes(spec, views)
        everything = self.header(spec.files)
        try:
            models = render_models(spec, f"# {everything}")
        except SpecError as exc:
            problems += exc.diagnostics
        if problems:
            raise SpecError(problems)
        files = {
            "__init__.py": self.env.get_template("__init__.py.jinja").render(header=everything),
            "models.py": models,
            "topology.py": self.env.get_template("topology.py.jinja").render(
                header=everything, spec=spec, services=views
            ),
        }
        service_template = self.env.get_template("service.py.jinja")
        for view in views:
            files[f"{view.service.py_name}.py"] = service_template.render(
                header=self.header(view.spec_files), view=view
            )
        return files

    def schema_file(self, message: Message) -> str:
        enums, records = named_types(self.spec, message.fields)
        files = {message.spec_file, *(e.spec_file for e in enums), *(r.spec_file for r in records)}
        document = message_schema(self.spec, message, self.header(files))
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render_all(spec: SpecSet, *, stamp_version: bool = True) -> dict[str, str]:
    """Every generated file: relative path (``/``-separated) -> full text, sorted by path."""
    renderer = Renderer(spec, stamp_version=stamp_version)
    files: dict[str, str] = format_all(renderer.python_files())
    for message in spec.messages:
        files[f"{SCHEMAS_DIR}/{message.name}.json"] = renderer.schema_file(message)
    return dict(sorted(files.items()))
