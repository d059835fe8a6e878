"""Sign-in attempts counted in Redis, so that every API process sees the same counts.

Three counters, each over a fixed window that starts with its first attempt: one username from
one address, one username from anywhere, one address for any username. An attempt is counted
when it starts, so that many at once cannot all slip past the count while their passwords are
checked, and handed back when it succeeds. Once a counter is over its limit, sign-in waits for
that counter's window to end, and Retry-After says exactly when.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from exporter.errors import ServiceUnavailable, TooManySignIns

# Wrong passwords for one username from one address within the window before it pauses.
MAX_PER_USERNAME_AND_ADDRESS = 10
WINDOW_S = 15 * 60


@dataclass(frozen=True)
class SignInLimits:
    """Attempts allowed per window: the per-username and per-address ones are settings."""

    per_username: int
    per_address: int
    per_username_and_address: int = MAX_PER_USERNAME_AND_ADDRESS
    window_s: int = WINDOW_S


@dataclass(frozen=True)
class _Counter:
    key: str
    limit: int
    refusal: str  # what the 429 says, before "try again within N minutes"


class SignInThrottle:
    """The counters of one sign-in attempt: ``start`` it, then ``succeeded`` if it did."""

    def __init__(
        self, redis: Redis, prefix: str, limits: SignInLimits, username: str, address: str
    ) -> None:
        name = username.casefold()
        self._redis = redis
        self._window_s = limits.window_s
        self._pair = _Counter(
            # An address holds no space, so the first one ends it: no two pairs share a key.
            f"{prefix}:pair:{address} {name}",
            limits.per_username_and_address,
            "too many wrong passwords",
        )
        self._username = _Counter(
            f"{prefix}:username:{name}",
            limits.per_username,
            "too many failed sign-ins for this username",
        )
        self._address = _Counter(
            f"{prefix}:address:{address}",
            limits.per_address,
            "too many failed sign-ins from this address",
        )

    async def start(self) -> None:
        """Count this attempt; TooManySignIns with the wait if a counter is over its limit."""
        counters = (self._pair, self._username, self._address)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for counter in counters:
                    pipe.incr(counter.key)
                    pipe.expire(counter.key, self._window_s, nx=True)
                    pipe.pttl(counter.key)
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable(f"sign-in is unavailable: {exc}") from exc
        over = [
            (math.ceil(max(ttl_ms, 0) / 1000), counter)
            for counter, count, ttl_ms in zip(counters, replies[0::3], replies[2::3], strict=True)
            if count > counter.limit
        ]
        if over:
            wait_s, counter = max(over, key=lambda pair: pair[0])
            raise TooManySignIns(
                f"{counter.refusal}; try again within {math.ceil(wait_s / 60)} minutes",
                retry_after_s=max(wait_s, 1),
            )

    async def succeeded(self) -> None:
        """The attempt was right: earlier wrong passwords from here no longer count."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._pair.key)
                for counter in (self._username, self._address):
                    pipe.decr(counter.key)
                    # Should the window have just ended, the count left is not kept forever.
                    pipe.expire(counter.key, self._window_s, nx=True)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable(f"sign-in is unavailable: {exc}") from exc
