"""Cordon's services. They meet only on the bus, through ``shared.contracts``."""
