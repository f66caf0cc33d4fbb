"""The registry's own table: residents' personal data, and the SQL that writes and reads it.

Name, ID-card number and phone never go into events (they are published to every service); they
are written here, in the same transaction as the ResidentRegistered event that carries the
opaque id and a masked name.
"""
from __future__ import annotations

DDL = """
CREATE TABLE IF NOT EXISTS registry.residents (
    resident      text PRIMARY KEY,
    household     text NOT NULL,
    community     text NOT NULL,
    name          text NOT NULL,
    id_number     text NOT NULL UNIQUE,
    phone         text,
    registered_at timestamptz NOT NULL
);
"""

INSERT_PII = (
    "INSERT INTO registry.residents (resident, household, community, name, id_number, phone, registered_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)"
)

#: Which of the given ID numbers are registered already ($1: text[]).
TAKEN_ID_NUMBERS = "SELECT id_number FROM registry.residents WHERE id_number = ANY($1)"
