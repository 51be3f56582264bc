"""Secrets (API tokens, feed tokens) are handed out once and stored only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token() -> str:
    """A fresh random secret of 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """SHA-256 is enough here: the tokens are random and long, so no salt or stretching is
    needed, and a fixed hash lets the database find a token by an indexed lookup."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hashes_match(stored_hash: str, token: str) -> bool:
    return hmac.compare_digest(stored_hash, token_hash(token))
