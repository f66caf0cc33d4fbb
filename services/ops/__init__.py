"""Operators' commands that repair what a fault left behind: `cordon dead-letters` (parked
messages listed and applied again) and `cordon republish` (recorded events published again)."""
