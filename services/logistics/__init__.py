"""The logistics service: supply requests, deliveries, welfare checks, stock, mask vouchers."""
