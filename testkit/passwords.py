"""Basic-auth users for test and bench web configs."""

from __future__ import annotations

import bcrypt


def bcrypt_hash(password: str, cost: int = 4) -> str:
    """The bcrypt hash a web config's `basic_auth_users` holds (cost 4 by default: tests need
    no slow hashing; a bench measuring bcrypt's own cost passes the real one)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
