"""Prometheus metrics for mmate (``pip install 'mmate[metrics]'``): ``PrometheusMetrics``, an
interceptor counting publishes, deliveries and their outcomes. See the operations guide."""

from ._observation.metrics import PrometheusMetrics

__all__ = ["PrometheusMetrics"]
