"""Password hashes (argon2id)."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@cache
def _stand_in_hash() -> str:
    return _hasher.hash("an account without a password")


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches the stored hash; an account with no hash never matches.

    Without a hash the check still runs against a stand-in, so that a wrong username takes
    as long to refuse as a wrong password and response times do not reveal which accounts exist.
    """
    try:
        return _hasher.verify(password_hash or _stand_in_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False
