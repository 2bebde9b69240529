"""HTTP basic authentication against a web config's bcrypt hashes, with exporter-toolkit's cache.

bcrypt is slow by design (tens to hundreds of milliseconds a check), too slow for a scrape every
few seconds, so a check bcrypt passed is remembered: the key is an HMAC (a random key of this
process) of the user, the stored hash and the password given, so only that exact triple is
accepted again without bcrypt; a failure is never remembered, an unknown user is checked against
a decoy hash (no timing tells which users exist), and one bcrypt runs at a time, so guessing
costs at most one core.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict

import bcrypt

CACHE_SIZE = 100  # as exporter-toolkit: a few scrapers and operators, each one entry


class BasicAuth:
    """`check(header)`: whether an `Authorization` header names a user with their password."""

    def __init__(self, users: dict[str, bytes], cache_size: int = CACHE_SIZE) -> None:
        self._users = users
        self._cache_size = cache_size
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._cache_key = secrets.token_bytes(32)
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()
        cost = max((int(hashed[4:6]) for hashed in users.values()), default=4)
        self._decoy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
        self.bcrypt_checks_total = 0  # for tests and benchmarks: how often bcrypt really ran

    def check(self, header: str | None) -> bool:
        credentials = parse_basic(header)
        return credentials is not None and self.verify(*credentials)

    def verify(self, user: bytes, password: bytes) -> bool:
        try:
            hashed = self._users.get(user.decode())
        except UnicodeDecodeError:  # no configured name: checked against the decoy like one
            hashed = None
        known = hashed is not None
        hashed = hashed if known else self._decoy
        key = hmac.digest(
            self._cache_key,
            b"%d:%s%d:%s" % (len(user), user, len(hashed), hashed) + password,
            hashlib.sha256,
        )
        with self._cache_lock:
            if known and key in self._verified:
                self._verified.move_to_end(key)
                return True
        with self._bcrypt_lock:
            self.bcrypt_checks_total += 1
            try:
                matches = bcrypt.checkpw(password, hashed)
            except ValueError:  # longer than bcrypt's 72 bytes, or a hash bcrypt refuses
                matches = False
        if not (known and matches):
            return False
        with self._cache_lock:
            self._verified[key] = None
            while len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return True


def parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) from `Basic base64(user:password)`; None for anything else."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None
