"""Unsilo's request signature, the same both ways: inbound webhooks check it, reply deliveries carry it.

`X-Unsilo-Timestamp` (Unix seconds) and `X-Unsilo-Signature: sha256=<hex HMAC-SHA256(secret,
timestamp + "." + raw body)>`.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Unsilo-Timestamp"
SIGNATURE_HEADER = "X-Unsilo-Signature"


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The `X-Unsilo-Signature` value for `body` sent at `timestamp`: `sha256=<hex>`."""
    message = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
