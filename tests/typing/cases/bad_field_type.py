"""A field given a value of the wrong type, and a wrong enum."""

from decimal import Decimal

from generated.models import OrderCreatedEvent, OrderLine

line = OrderLine(product_id="SKU-1", quantity="2", unit_price=Decimal(1))  # E: Argument "quantity" to "OrderLine" has incompatible type "str"; expected "int"
event = OrderCreatedEvent(order_id="o", customer_id="c", amount=1, region="eu")  # E: Argument "region" to "OrderCreatedEvent" has incompatible type "str"; expected "Region"
