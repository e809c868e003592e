"""Exports of a spec set for the tools teams already use: an AsyncAPI 3.0 document, a RabbitMQ
definitions file, a mermaid diagram. Each is a function of the intermediate model alone, and
deterministic: the same specs give the same bytes."""
