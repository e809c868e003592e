"""Constructing a model without one of its required fields."""

from generated.models import CreateOrderCommand, Region

command = CreateOrderCommand(customer_id="c-1", region=Region.EU)  # E: Missing named argument "lines"
