"""CODE: what breaks code written against the generated Python package.

The generated names come from the same functions the templates use (``mmate_gen.views``): model
classes (``models.X``), their attributes (constructor keywords), enum members, service modules,
their ``<Service>Publisher`` methods and the abstract methods of ``<Service>Handlers``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from ..diagnostics import Location
from ..ir import Field, SpecSet
from ..views import SpecIndex, service_view
from .findings import Finding, finding
from .wire import Shapes, WireDiff, renames, type_text


def _annotation(f: Field) -> str:
    return type_text(f.type) + (" | None" if f.nullable else "")


class _Classes:
    def __init__(self, spec: SpecSet) -> None:
        self.fields: dict[str, tuple[Field, ...]] = {m.name: m.fields for m in spec.messages}
        self.fields.update({r.name: r.fields for r in spec.records})
        self.enums = {e.name: e for e in spec.enums}
        self.locs: dict[str, Location] = {m.name: m.loc for m in spec.messages}
        self.locs.update({r.name: r.loc for r in spec.records})
        self.locs.update({e.name: e.loc for e in spec.enums})

    @property
    def names(self) -> list[str]:
        return sorted(self.locs)


class CodeDiff:
    def __init__(self, old: SpecSet, new: SpecSet, wire: WireDiff) -> None:
        self.old, self.new, self.wire = old, new, wire
        self.shapes = Shapes(old, new)
        self.out: list[Finding] = []

    def add(
        self, rule_id: str, subject: str, message: str, old: Location | None, new: Location | None
    ) -> None:
        self.out.append(finding(rule_id, subject, message, old, new))

    def run(self) -> list[Finding]:
        self._classes()
        self._services()
        return self.out

    def _class_renames(
        self, old: _Classes, new: _Classes, removed: Sequence[str], added: Sequence[str]
    ) -> dict[str, str]:
        found = dict(self.wire.message_renames)

        def same(r: str, a: str) -> bool:
            if r in old.enums and a in new.enums:
                return set(old.enums[r].values) == set(new.enums[a].values)
            if r in old.fields and a in new.fields and r not in self.wire.message_renames:
                return self.shapes.same_fields(old.fields[r], new.fields[a])
            return False

        left_removed = [r for r in removed if r not in found]
        left_added = [a for a in added if a not in found.values()]
        found.update(renames(left_removed, left_added, same))
        return found

    def _classes(self) -> None:
        old, new = _Classes(self.old), _Classes(self.new)
        removed = [n for n in old.names if n not in new.locs]
        added = [n for n in new.names if n not in old.locs]
        renamed = self._class_renames(old, new, removed, added)
        for r in removed:
            if r in renamed:
                self.add(
                    "class-renamed",
                    f"models.{r}",
                    f"class models.{r} is now models.{renamed[r]}",
                    old.locs[r],
                    new.locs[renamed[r]],
                )
            else:
                self.add(
                    "class-removed",
                    f"models.{r}",
                    f"class models.{r} was removed",
                    old.locs[r],
                    None,
                )
        for name in old.names:
            if name not in new.locs:
                continue
            if name in old.enums and name in new.enums:
                for value in old.enums[name].values:
                    if value not in new.enums[name].values:
                        self.add(
                            "enum-member-removed",
                            f"models.{name}.{value}",
                            f'models.{name} lost its member for "{value}"',
                            old.locs[name],
                            new.locs[name],
                        )
            elif name in old.fields and name in new.fields:
                self._attributes(
                    name, old.fields[name], new.fields[name], old.locs[name], new.locs[name]
                )

    def _attributes(
        self,
        owner: str,
        old_fields: Sequence[Field],
        new_fields: Sequence[Field],
        old_loc: Location,
        new_loc: Location,
    ) -> None:
        old = {f.json_name: f for f in old_fields}
        new = {f.json_name: f for f in new_fields}
        for key, f in old.items():
            subject = f"models.{owner}.{f.py_name}"
            if key in new:
                if _annotation(f) != _annotation(new[key]):
                    self.add(
                        "attribute-type-changed",
                        subject,
                        f"{subject}: {_annotation(f)} -> {_annotation(new[key])}",
                        f.loc,
                        new[key].loc,
                    )
                continue
            target = self.wire.field_renames.get((owner, key))
            if target is not None and target in new:
                self.add(
                    "attribute-renamed",
                    subject,
                    f"{subject} is now {new[target].py_name}",
                    f.loc,
                    new[target].loc,
                )
            else:
                self.add("attribute-removed", subject, f"{subject} was removed", f.loc, new_loc)
        renamed_to = {v for (o, _k), v in self.wire.field_renames.items() if o == owner}
        for key, f in new.items():
            if key not in old and key not in renamed_to and f.required:
                subject = f"models.{owner}.{f.py_name}"
                self.add(
                    "required-parameter-added",
                    subject,
                    f"models.{owner}(...) needs the new keyword {f.py_name}",
                    old_loc,
                    f.loc,
                )

    def _services(self) -> None:
        old_index, new_index = SpecIndex(self.old), SpecIndex(self.new)
        old_services = {s.name: s for s in self.old.services}
        new_services = {s.name: s for s in self.new.services}
        for name, service in old_services.items():
            if name not in new_services:
                self.add(
                    "module-removed",
                    service.py_name,
                    f"module {service.py_name} (service {name}) is no longer generated",
                    service.loc,
                    None,
                )
                continue
            before = service_view(old_index, service)
            after = service_view(new_index, new_services[name])
            module = service.py_name
            self._methods(
                f"{module}.{service.class_prefix}Publisher",
                {v.message.name: v.method for v in before.publishes},
                {v.message.name: v.method for v in after.publishes},
                service.loc,
                new_services[name].loc,
                kind="publisher",
            )
            self._methods(
                f"{module}.{service.class_prefix}Handlers",
                {v.message.name: v.method for v in before.handlers},
                {v.message.name: v.method for v in after.handlers},
                service.loc,
                new_services[name].loc,
                kind="handlers",
            )
            # The Routes registry: handle_<type>(function) and handle_<type>_with(factory).
            for suffix in ("", "_with"):
                self._methods(
                    f"{module}.{service.class_prefix}Routes",
                    {v.message.name: v.method + suffix for v in before.handlers},
                    {v.message.name: v.method + suffix for v in after.handlers},
                    service.loc,
                    new_services[name].loc,
                    kind="routes",
                )

    def _methods(
        self,
        owner: str,
        old: Mapping[str, str],
        new: Mapping[str, str],
        old_loc: Location,
        new_loc: Location,
        *,
        kind: Literal["publisher", "handlers", "routes"],
    ) -> None:
        old_methods = set(old.values())
        new_methods = set(new.values())
        renamed = {
            old[m]: new[t] for m, t in self.wire.message_renames.items() if m in old and t in new
        }
        for method in sorted(old_methods - new_methods):
            subject = f"{owner}.{method}"
            if method in renamed:
                self.add(
                    "method-renamed",
                    subject,
                    f"{subject} is now {renamed[method]}",
                    old_loc,
                    new_loc,
                )
            elif kind == "handlers":
                self.add(
                    "handler-method-removed",
                    subject,
                    f"{subject} is no longer called",
                    old_loc,
                    new_loc,
                )
            else:
                self.add("method-removed", subject, f"{subject} was removed", old_loc, new_loc)
        for method in sorted(new_methods - old_methods):
            if method in renamed.values():
                continue
            subject = f"{owner}.{method}"
            if kind == "handlers":
                self.add(
                    "abstract-method-added",
                    subject,
                    f"{subject} is a new abstract method",
                    old_loc,
                    new_loc,
                )
            elif kind == "routes":
                if method.endswith("_with"):
                    continue  # one finding per new type: registering either way is enough
                self.add(
                    "route-registration-added",
                    subject,
                    f"{subject} registers a new message type",
                    old_loc,
                    new_loc,
                )
            else:
                self.add("method-added", subject, f"{subject} was added", old_loc, new_loc)


def code_findings(old: SpecSet, new: SpecSet, wire: WireDiff) -> list[Finding]:
    return CodeDiff(old, new, wire).run()
