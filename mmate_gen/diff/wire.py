"""WIRE: changes to the JSON that readers and writers of another version see.

Messages are matched by type name, fields by JSON name. Records and enums are compared once by
name (subject ``Order.customerId``); a field whose type switches to another record or enum is
compared by shape, so a renamed but identical record changes nothing on the wire. A removed and
an added message (or field) of the same shape are reported as one rename.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..diagnostics import Location
from ..ir import Constraints, EnumType, Field, JsonValue, Message, RecordType, SpecSet, TypeRef
from .findings import Finding, finding

Direction = str
"""``raise``: a higher value is tighter; ``lower``: a lower value is tighter; ``exact``: any
change is tighter (two regular expressions cannot be compared)."""

CONSTRAINTS: tuple[tuple[str, Callable[[Constraints], object], Direction], ...] = (
    ("min", lambda c: c.minimum, "raise"),
    ("max", lambda c: c.maximum, "lower"),
    ("min_length", lambda c: c.min_length, "raise"),
    ("max_length", lambda c: c.max_length, "lower"),
    ("pattern", lambda c: c.pattern, "exact"),
)
"""Spec key, value, direction: one entry per constraint key of the spec language."""


def type_text(t: TypeRef) -> str:
    if t.kind == "list" and t.item is not None:
        return f"list[{type_text(t.item)}]"
    if t.kind == "map" and t.item is not None:
        return f"map[string, {type_text(t.item)}]"
    return t.name


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class _Side:
    enums: dict[str, EnumType]
    records: dict[str, RecordType]

    @classmethod
    def of(cls, spec: SpecSet) -> _Side:
        return cls({e.name: e for e in spec.enums}, {r.name: r for r in spec.records})


class Shapes:
    """Whether two types (or field lists) of the two sides look the same on the wire."""

    def __init__(self, old: SpecSet, new: SpecSet) -> None:
        self.old = _Side.of(old)
        self.new = _Side.of(new)

    def same_type(
        self, a: TypeRef, b: TypeRef, seen: frozenset[tuple[str, str]] = frozenset()
    ) -> bool:
        if a.kind != b.kind:
            return False
        if a.kind == "scalar":
            return a.name == b.name
        if a.kind in ("list", "map"):
            return (
                a.item is not None and b.item is not None and self.same_type(a.item, b.item, seen)
            )
        if a.kind == "enum":
            return set(self.old.enums[a.name].values) == set(self.new.enums[b.name].values)
        if (a.name, b.name) in seen:
            return True
        return self.same_fields(
            self.old.records[a.name].fields,
            self.new.records[b.name].fields,
            seen | {(a.name, b.name)},
        )

    def same_field(
        self, a: Field, b: Field, seen: frozenset[tuple[str, str]] = frozenset()
    ) -> bool:
        return (
            a.required == b.required
            and a.nullable == b.nullable
            and a.constraints == b.constraints
            and self.same_type(a.type, b.type, seen)
        )

    def same_fields(
        self, a: Sequence[Field], b: Sequence[Field], seen: frozenset[tuple[str, str]] = frozenset()
    ) -> bool:
        old = {f.json_name: f for f in a}
        new = {f.json_name: f for f in b}
        return old.keys() == new.keys() and all(self.same_field(old[k], new[k], seen) for k in old)


def renames(
    removed: Sequence[str], added: Sequence[str], same: Callable[[str, str], bool]
) -> dict[str, str]:
    """Old name -> new name for removed items with exactly one added item of the same shape (and
    that added item matching no other removed one)."""
    candidates = {r: [a for a in added if same(r, a)] for r in removed}
    claimed: dict[str, int] = {}
    for found in candidates.values():
        for a in found:
            claimed[a] = claimed.get(a, 0) + 1
    return {
        r: found[0] for r, found in candidates.items() if len(found) == 1 and claimed[found[0]] == 1
    }


class WireDiff:
    def __init__(self, old: SpecSet, new: SpecSet) -> None:
        self.old, self.new = old, new
        self.shapes = Shapes(old, new)
        self.out: list[Finding] = []
        self.message_renames: dict[str, str] = {}
        self.field_renames: dict[tuple[str, str], str] = {}
        """(owner, old JSON name) -> new JSON name, for the CODE comparison."""

    def add(
        self, rule_id: str, subject: str, message: str, old: Location | None, new: Location | None
    ) -> None:
        self.out.append(finding(rule_id, subject, message, old, new))

    def run(self) -> list[Finding]:
        self._messages()
        old_records = {r.name: r for r in self.old.records}
        for r in self.new.records:
            if r.name in old_records:
                before = old_records[r.name]
                self.fields(r.name, before.fields, r.fields, before.loc, r.loc, frozenset())
        old_enums = {e.name: e for e in self.old.enums}
        for e in self.new.enums:
            if e.name in old_enums:
                before_enum = old_enums[e.name]
                self.enum_values(e.name, f"enum {e.name}", before_enum, e, before_enum.loc, e.loc)
        return self.out

    def _messages(self) -> None:
        old = {m.name: m for m in self.old.messages}
        new = {m.name: m for m in self.new.messages}
        removed = [n for n in old if n not in new]
        added = [n for n in new if n not in old]

        def same(r: str, a: str) -> bool:
            return old[r].kind == new[a].kind and self.shapes.same_fields(
                old[r].fields, new[a].fields
            )

        self.message_renames = renames(removed, added, same)
        for r, a in self.message_renames.items():
            self.add(
                "message-renamed",
                r,
                f"message {r} was renamed to {a} (same fields)",
                old[r].loc,
                new[a].loc,
            )
        for r in removed:
            if r not in self.message_renames:
                self.add(
                    "message-removed",
                    r,
                    f"message {r} ({old[r].kind}) was removed",
                    old[r].loc,
                    None,
                )
        for a in added:
            if a not in self.message_renames.values():
                self.add(
                    "message-added", a, f"message {a} ({new[a].kind}) was added", None, new[a].loc
                )
        for name in sorted(old.keys() & new.keys()):
            self._message(old[name], new[name])

    def _message(self, o: Message, n: Message) -> None:
        if o.kind != n.kind:
            self.add(
                "message-kind-changed",
                o.name,
                f"message {o.name} changed kind from {o.kind} to {n.kind}",
                o.loc,
                n.loc,
            )
        if o.reply != n.reply and o.reply is not None and n.reply is not None:
            self.add(
                "query-reply-changed",
                o.name,
                f"query {o.name} now replies {n.reply} instead of {o.reply}",
                o.loc,
                n.loc,
            )
        if o.version != n.version:
            self.add(
                "schema-version-changed",
                o.name,
                f"message {o.name} schema version {o.version} -> {n.version}",
                o.loc,
                n.loc,
            )
        own_old = o.fields if o.kind == n.kind else tuple(f for f in o.fields if not f.base)
        own_new = n.fields if o.kind == n.kind else tuple(f for f in n.fields if not f.base)
        self.fields(o.name, own_old, own_new, o.loc, n.loc, frozenset())

    def fields(
        self,
        owner: str,
        old_fields: Sequence[Field],
        new_fields: Sequence[Field],
        old_owner: Location,
        new_owner: Location,
        seen: frozenset[tuple[str, str]],
    ) -> None:
        old = {f.json_name: f for f in old_fields}
        new = {f.json_name: f for f in new_fields}
        removed = [k for k in old if k not in new]
        added = [k for k in new if k not in old]
        renamed = renames(removed, added, lambda r, a: self.shapes.same_field(old[r], new[a]))
        for r, a in renamed.items():
            self.field_renames[(owner, r)] = a
            self.add(
                "field-renamed",
                f"{owner}.{r}",
                f'field "{r}" of {owner} was renamed to "{a}"',
                old[r].loc,
                new[a].loc,
            )
        for r in removed:
            if r in renamed:
                continue
            f = old[r]
            rule_id = "field-removed" if f.required else "optional-field-removed"
            what = "required" if f.required else "optional"
            self.add(
                rule_id,
                f"{owner}.{r}",
                f'{what} field "{r}" ({type_text(f.type)}) was removed from {owner}',
                f.loc,
                new_owner,
            )
        for a in added:
            if a in renamed.values():
                continue
            f = new[a]
            rule_id = "field-added-required" if f.required else "field-added-optional"
            what = "required" if f.required else "optional"
            self.add(
                rule_id,
                f"{owner}.{a}",
                f'{what} field "{a}" ({type_text(f.type)}) was added to {owner}',
                old_owner,
                f.loc,
            )
        for key in old:
            if key in new:
                self.field(f"{owner}.{key}", old[key], new[key], seen)

    def field(self, subject: str, o: Field, n: Field, seen: frozenset[tuple[str, str]]) -> None:
        self.type_change(subject, o.type, n.type, o.loc, n.loc, seen)
        if o.nullable != n.nullable:
            rule_id = "field-made-nullable" if n.nullable else "field-made-non-nullable"
            state = "may now be null" if n.nullable else "may no longer be null"
            self.add(rule_id, subject, f"{subject} {state}", o.loc, n.loc)
        elif o.required and not n.required:
            self.add(
                "field-default-added",
                subject,
                f"{subject} got the default {_show(n.default)}",
                o.loc,
                n.loc,
            )
        elif n.required and not o.required:
            self.add(
                "field-made-required",
                subject,
                f"{subject} lost its default and is now required",
                o.loc,
                n.loc,
            )
        if o.has_default and n.has_default and o.default != n.default:
            self.add(
                "field-default-changed",
                subject,
                f"default of {subject}: {_json(o.default)} -> {_json(n.default)}",
                o.loc,
                n.loc,
            )
        for key, value_of, direction in CONSTRAINTS:
            before, after = value_of(o.constraints), value_of(n.constraints)
            if before == after:
                continue
            if after is None:
                tighter = False
            elif before is None or direction == "exact":
                tighter = True
            else:
                assert isinstance(before, int | float) and isinstance(after, int | float)
                tighter = after > before if direction == "raise" else after < before
            rule_id = "constraint-tightened" if tighter else "constraint-loosened"
            shown_before = "none" if before is None else _show(before)
            shown_after = "none" if after is None else _show(after)
            self.add(
                rule_id,
                subject,
                f"{key} of {subject}: {shown_before} -> {shown_after}",
                o.loc,
                n.loc,
            )

    def type_change(
        self,
        subject: str,
        a: TypeRef,
        b: TypeRef,
        old: Location,
        new: Location,
        seen: frozenset[tuple[str, str]],
    ) -> None:
        if (
            a.kind == b.kind
            and a.kind in ("list", "map")
            and a.item is not None
            and b.item is not None
        ):
            self.type_change(
                subject + ("[]" if a.kind == "list" else "{}"), a.item, b.item, old, new, seen
            )
            return
        if a.kind == b.kind == "enum":
            if a.name != b.name:
                self.enum_values(
                    subject,
                    f"{subject} ({a.name} -> {b.name})",
                    self.shapes.old.enums[a.name],
                    self.shapes.new.enums[b.name],
                    old,
                    new,
                )
            return
        if a.kind == b.kind == "record":
            if a.name != b.name and (a.name, b.name) not in seen:
                self.fields(
                    subject,
                    self.shapes.old.records[a.name].fields,
                    self.shapes.new.records[b.name].fields,
                    old,
                    new,
                    seen | {(a.name, b.name)},
                )
            return
        if type_text(a) != type_text(b) or a.kind != b.kind:
            self.add(
                "field-type-changed",
                subject,
                f"type of {subject}: {type_text(a)} -> {type_text(b)}",
                old,
                new,
            )

    def enum_values(
        self, subject: str, what: str, o: EnumType, n: EnumType, old: Location, new: Location
    ) -> None:
        for value in o.values:
            if value not in n.values:
                self.add(
                    "enum-value-removed",
                    f"{subject}.{value}",
                    f'{what} lost the value "{value}"',
                    old,
                    new,
                )
        for value in n.values:
            if value not in o.values:
                self.add(
                    "enum-value-added",
                    f"{subject}.{value}",
                    f'{what} gained the value "{value}"',
                    old,
                    new,
                )


def _json(value: JsonValue) -> str:
    return json.dumps(value, sort_keys=True)


def wire_findings(old: SpecSet, new: SpecSet) -> WireDiff:
    diff = WireDiff(old, new)
    diff.run()
    return diff
