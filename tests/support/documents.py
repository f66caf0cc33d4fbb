"""Checks shared by the tests of the generated API documents (AsyncAPI and OpenAPI)."""
from __future__ import annotations


def assert_refs_resolve(doc: dict) -> None:
    """Every ``$ref`` in ``doc`` points at a node that exists in it."""
    for ref in set(_refs(doc)):
        node = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, f"{ref} does not resolve (at {part})"
            node = node[part]


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)
