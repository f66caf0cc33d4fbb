"""The HTTP status of each stable error code: the web gateway answers with the NATS API's reply
body, unchanged, under the status that says the same thing to an HTTP client.

``rejected`` is 409: the request is well formed and understood (not 422) but conflicts with the
state of what it names now (a case already closed, stock run out); sent again later it may pass.
``invalid`` (the request itself is wrong) is 422, and ``conflict`` (the id is taken, the stream
moved past ``expected_version``) 409 too: a client tells them apart by ``error.code``.
"""
from __future__ import annotations

from shared.errors import CODES

#: error code -> HTTP status
HTTP_STATUS: dict[str, int] = {
    "invalid": 422,
    "unknown_command": 404,
    "not_found": 404,
    "conflict": 409,
    "rejected": 409,
    "too_large": 413,
    "unauthenticated": 401,
    "forbidden": 403,
    "unavailable": 503,
    "internal": 500,
}
#: codes only the gateway itself answers (not a service)
GATEWAY_CODES = {
    "unsupported_media_type": (415, "the body is not application/json (commands) or a creds file (tokens)"),
    "unknown_path": (404, "no such path, command or query: see /v1/openapi.json"),
    "method_not_allowed": (405, "this path does not take that method"),
    "timeout": (408, "the request's body did not arrive in time"),
}

assert set(HTTP_STATUS) == set(CODES), "every stable code has a status"


def status_of(reply: dict) -> int:
    """200 for an accepted command or an answered query, else the status of its error code (a
    health reply with ``ok`` false is an answer, not an error: it says which service is unwell)."""
    if reply.get("ok", True) or "error" not in reply:
        return 200
    code = reply.get("error", {}).get("code", "internal")
    return HTTP_STATUS.get(code) or GATEWAY_CODES.get(code, (500, ""))[0]
