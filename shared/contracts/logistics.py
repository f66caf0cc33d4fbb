"""Public events of the logistics service (supply requests, deliveries, welfare checks, stock,
mask vouchers)."""
from __future__ import annotations

SERVICE = "logistics"
