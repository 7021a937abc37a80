"""Pure token material: generation and the hash that is stored instead of the token."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "cvy_"


def new_token() -> str:
    """A fresh API token: `cvy_` + 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_token_id() -> str:
    """A short public identifier for a token (safe to show, log and audit)."""
    return "tok_" + secrets.token_hex(6)


def hash_token(token: str) -> str:
    """sha256 of the token; tokens carry 256 bits of entropy, so no slow KDF is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    """The first characters of a token, enough to recognise it in a list."""
    return token[: len(TOKEN_PREFIX) + 4]


def looks_like_token(value: str) -> bool:
    """Cheap shape check before touching the store."""
    return value.startswith(TOKEN_PREFIX) and 20 <= len(value) <= 128


def same_hash(a: str, b: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(a, b)
