"""The minimal core: events, orders, clock, broker contract, portfolio and engine loop."""
