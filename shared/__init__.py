"""Cordon's backbone: envelope and codec, subjects, event store, outbox relay, consumers,
configuration, logging and the embedded servers. Imports no service."""
