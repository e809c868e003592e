"""The broker entities a spec set needs (exchanges, queues, bindings, the delay cascade), flat.

The exports (definitions file, AsyncAPI, diagram) and ``mmate topology`` read this one list, so
they always agree on what "the topology of the specs" is.
"""
