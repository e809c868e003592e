"""Every rule of ``mmate-gen diff``: its category, severity, what it means and the suggested
migration. The comparisons (``wire``, ``code``, ``topology``) only decide which rule a change
falls under; the words live here, so a new spec key is one entry in a comparison table plus, if
it needs its own wording, one rule here.

Severities: ``breaking`` fails the diff (exit 1) unless allowed; ``warning`` is compatible but
worth a look (strict readers, stranded leftovers); ``info`` is a compatible change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Category = Literal["WIRE", "CODE", "TOPOLOGY"]
Severity = Literal["breaking", "warning", "info"]

SEVERITY_ORDER: dict[Severity, int] = {"breaking": 0, "warning": 1, "info": 2}
CATEGORY_ORDER: dict[Category, int] = {"WIRE": 0, "CODE": 1, "TOPOLOGY": 2}


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    category: Category
    severity: Severity
    meaning: str
    """One line: what the change does to whom."""
    migration: str
    """The suggested way through it (empty for plain compatible changes)."""


_TWO_PHASE = (
    "two-phase removal: first stop writing it (and make readers tolerate its absence), deploy "
    "every reader and writer, then remove it from the spec"
)
_V2_MESSAGE = (
    "add a new message type (e.g. a V2 suffix) on a new routing key, publish both during the "
    "rollout, move the consumers, then retire the old one"
)
_NEW_QUEUE = (
    "a queue is never changed in place: declare a new queue (e.g. NAME.v2) with the new "
    "settings and its bindings, move the consumers to it, move what is left in the old one with "
    "a shovel (rabbitmq-shovel) or `mmate dlq replay --to`, then delete the old queue; settings "
    "such as TTL, length limits and dead-lettering can instead be applied by a RabbitMQ policy "
    "without a redeclare"
)

RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        # -- WIRE: the JSON a reader or writer of another version sees ---------------------------
        Rule("message-removed", "WIRE", "breaking",
             "publishers and handlers of the old version still send or expect this type",
             _TWO_PHASE),
        Rule("message-renamed", "WIRE", "breaking",
             "the type name is the contract: readers of the old version do not know the new name "
             "(Go resolves the type from it alone)", _V2_MESSAGE),
        Rule("message-kind-changed", "WIRE", "breaking",
             "the kind decides the base fields, the headers and the default exchange and key",
             _V2_MESSAGE),
        Rule("query-reply-changed", "WIRE", "breaking",
             "requesters of the old version expect the old reply type", _V2_MESSAGE),
        Rule("message-added", "WIRE", "info", "a new message type", ""),
        Rule("schema-version-changed", "WIRE", "info",
             "the x-schema-version header of the message changes", ""),
        Rule("field-removed", "WIRE", "breaking",
             "readers of the old version reject messages without this required field",
             _TWO_PHASE + " (give it a default first, so old readers accept its absence)"),
        Rule("optional-field-removed", "WIRE", "warning",
             "readers of the old version fill in its default when it is missing", ""),
        Rule("field-renamed", "WIRE", "breaking",
             "the JSON name is the contract: readers of either version miss the other's field",
             "add the new field beside the old one (optional), write both, move the readers, "
             "then remove the old field (two-phase removal)"),
        Rule("field-added-required", "WIRE", "breaking",
             "messages from writers of the old version lack it and are rejected as poison",
             "add it optional or with a default, deploy every writer, then make it required"),
        Rule("field-added-optional", "WIRE", "info", "a new optional field", ""),
        Rule("field-type-changed", "WIRE", "breaking",
             "readers of the other version fail to validate the value",
             "add a field with a new name and the new type beside the old one (two-phase "
             "removal of the old), or " + _V2_MESSAGE),
        Rule("field-made-required", "WIRE", "breaking",
             "writers of the old version may leave it out; new readers reject that",
             "deploy every writer filling it in first, then make it required"),
        Rule("field-made-nullable", "WIRE", "breaking",
             "new writers may send null, which readers of the old version reject",
             "deploy every reader accepting null first, then let writers send it"),
        Rule("field-made-non-nullable", "WIRE", "breaking",
             "writers of the old version may send null, which new readers reject",
             "deploy every writer that never sends null first"),
        Rule("field-default-added", "WIRE", "info",
             "the field is no longer required; readers fill in the default", ""),
        Rule("field-default-changed", "WIRE", "warning",
             "readers of the two versions fill in different values when the field is missing",
             "make writers always send the field, so the default never applies"),
        Rule("enum-value-removed", "WIRE", "breaking",
             "writers of the old version may still send it; new readers reject it",
             "two-phase removal: first stop writing the value, deploy every writer, then remove "
             "it from the spec"),
        Rule("enum-value-added", "WIRE", "warning",
             "compatible for tolerant readers; strict readers of the old version (every "
             "generated model validates enums) reject the new value",
             "deploy every reader that knows the value before any writer sends it"),
        Rule("constraint-tightened", "WIRE", "breaking",
             "values that were valid are now rejected",
             "deploy every writer respecting the new bound before readers enforce it"),
        Rule("constraint-loosened", "WIRE", "info",
             "values that were invalid are now accepted (readers of the old version still "
             "reject them)", ""),
        # -- CODE: what breaks code written against the generated Python -------------------------
        Rule("class-removed", "CODE", "breaking",
             "code importing or constructing the class fails",
             "keep the class until no code uses it (two-phase removal)"),
        Rule("class-renamed", "CODE", "breaking",
             "code importing the old class name fails",
             "rename the uses in the same change; for a message, " + _V2_MESSAGE),
        Rule("attribute-removed", "CODE", "breaking",
             "code reading or passing the attribute fails", _TWO_PHASE),
        Rule("attribute-renamed", "CODE", "breaking",
             "code reading or passing the old attribute name fails",
             "rename the uses in the same change"),
        Rule("attribute-type-changed", "CODE", "breaking",
             "code typed against the old type no longer type-checks",
             "update the uses in the same change"),
        Rule("required-parameter-added", "CODE", "breaking",
             "constructor calls without the new required field fail",
             "add the field with a default, or pass it everywhere in the same change"),
        Rule("enum-member-removed", "CODE", "breaking",
             "code naming the enum member fails", "remove the uses in the same change"),
        Rule("module-removed", "CODE", "breaking",
             "code importing the service's generated module (its Publisher, Handlers and "
             "topology constant) fails", "retire the service's code in the same change"),
        Rule("method-removed", "CODE", "breaking",
             "code calling the generated publisher or registry method fails",
             "remove the calls in the same change"),
        Rule("method-renamed", "CODE", "breaking",
             "code calling the old method name fails", "rename the calls in the same change"),
        Rule("abstract-method-added", "CODE", "breaking",
             "a handler subclass that does not implement it cannot be instantiated",
             "implement the new handler method in every subclass in the same change"),
        Rule("route-registration-added", "CODE", "breaking",
             "Client.serve(routes) refuses to start while a consumed message type has no "
             "registered handler",
             "register a handler for the new type (routes.handle_<type>(...) or "
             "handle_<type>_with(...)) in the same change"),
        Rule("handler-method-removed", "CODE", "warning",
             "subclasses keep an implementation that is no longer called", ""),
        Rule("method-added", "CODE", "info", "a new generated publisher method", ""),
        # -- TOPOLOGY: what the broker refuses and what strands messages -------------------------
        Rule("queue-type-changed", "TOPOLOGY", "breaking",
             "redeclaring the queue fails with 406 PRECONDITION_FAILED", _NEW_QUEUE),
        Rule("queue-arguments-changed", "TOPOLOGY", "breaking",
             "redeclaring the queue fails with 406 PRECONDITION_FAILED", _NEW_QUEUE),
        Rule("queue-flags-changed", "TOPOLOGY", "breaking",
             "redeclaring the queue fails with 406 PRECONDITION_FAILED", _NEW_QUEUE),
        Rule("dead-letter-route-changed", "TOPOLOGY", "breaking",
             "redeclaring the queue fails with 406 PRECONDITION_FAILED, and the dead letters "
             "already in the old dead-letter queue stay there",
             _NEW_QUEUE + "; drain or replay the old dead-letter queue (`mmate dlq replay`)"),
        Rule("queue-removed", "TOPOLOGY", "breaking",
             "a durable queue may still hold messages that nothing consumes once it is gone "
             "from the specs (declare never deletes it)",
             "unbind it and stop publishing to it first, let its consumers drain it (check its "
             "depth with `mmate topology verify --url URL NEW_SPECS`, which lists it as an "
             "extra entity with its message count), then delete it by hand"),
        Rule("transient-queue-removed", "TOPOLOGY", "info",
             "an auto-delete, exclusive or non-durable queue goes away by itself", ""),
        Rule("wait-queue-removed", "TOPOLOGY", "warning",
             "messages waiting in it still go back to their queue when their delay ends; the "
             "queue itself stays on the broker", "delete it by hand once it is empty"),
        Rule("queue-added", "TOPOLOGY", "info", "a new queue", ""),
        Rule("consumer-settings-changed", "TOPOLOGY", "info",
             "a client-side setting of the queue (nothing is redeclared)", ""),
        Rule("exchange-type-changed", "TOPOLOGY", "breaking",
             "redeclaring the exchange fails with 406 PRECONDITION_FAILED",
             "declare a new exchange with the new type, bind the queues to it, move the "
             "publishers, then delete the old exchange"),
        Rule("exchange-flags-changed", "TOPOLOGY", "breaking",
             "redeclaring the exchange fails with 406 PRECONDITION_FAILED",
             "declare a new exchange, bind the queues to it, move the publishers, then delete "
             "the old exchange"),
        Rule("exchange-removed", "TOPOLOGY", "warning",
             "declare never deletes it; publishers of the old version may still use it",
             "delete it by hand once nothing publishes to it"),
        Rule("exchange-added", "TOPOLOGY", "info", "a new exchange", ""),
        Rule("binding-removed", "TOPOLOGY", "breaking",
             "publishers still use its route, and once it is unbound their messages no longer "
             "reach the queue (declare never unbinds: the old binding stays until removed)",
             "keep the binding until no publisher uses the route, or bind the new pattern "
             "first; then unbind the old one by hand"),
        Rule("unused-binding-removed", "TOPOLOGY", "info",
             "no publisher of either version uses its route, or another binding still "
             "delivers it (declare never unbinds: remove it by hand)", ""),
        Rule("binding-added", "TOPOLOGY", "info", "a new binding", ""),
        Rule("publish-route-changed", "TOPOLOGY", "breaking",
             "messages on the new route no longer reach a queue the old route reached",
             "bind the consumers' queues to the new routing key before switching the "
             "publishers, or publish on both routes during the rollout; for an incompatible "
             "message, " + _V2_MESSAGE),
        Rule("publish-route-moved", "TOPOLOGY", "info",
             "the route changed but reaches every queue it reached before", ""),
        Rule("publish-persistence-changed", "TOPOLOGY", "warning",
             "non-persistent messages are lost when the broker restarts", ""),
        Rule("publish-compression-changed", "TOPOLOGY", "warning",
             "a consumer that cannot decode the new content encoding (Go Mmate reads no compressed "
             "body; an mmate without zstd support reads no zstd) dead-letters the messages",
             "upgrade every consumer of the route to an mmate that decodes the encoding before "
             "the publishers compress; keep routes to Go consumers uncompressed"),
        Rule("publish-priority-changed", "TOPOLOGY", "info",
             "the default AMQP priority of the route's messages (only queues with max_priority "
             "order by it)", ""),
        Rule("publish-removed", "TOPOLOGY", "info", "the service no longer publishes it", ""),
        Rule("publish-added", "TOPOLOGY", "info", "the service publishes a new message", ""),
    )
}  # fmt: skip


def rule(rule_id: str) -> Rule:
    return RULES[rule_id]
