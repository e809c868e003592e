"""OpenTelemetry tracing for mmate (``pip install 'mmate[tracing]'``): ``OpenTelemetryTracing``,
an interceptor with a producer span per publish and a consumer span per handled message."""

from ._observation.tracing import OpenTelemetryTracing

__all__ = ["OpenTelemetryTracing"]
