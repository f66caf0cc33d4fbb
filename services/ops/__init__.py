"""Operators' commands that repair what a fault left behind: `cordon dead-letters` (parked
messages listed and applied again)."""
