"""The transport seam (``base``) and its backends: ``aiormq`` (RabbitMQ) and ``memory``
(in-process). Nothing outside ``_transport.aiormq`` imports aiormq or pamqp."""
