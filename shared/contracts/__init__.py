"""The public events of each service, as wire types (msgspec Structs, no logic).

Importing this package registers every event type with :mod:`shared.envelope`.
"""
from shared.contracts import checkpoint, logistics, quarantine, registry  # noqa: F401
