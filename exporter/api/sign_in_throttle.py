"""Sign-in attempts counted in Redis, so that every API process sees the same counts.

Three counters, each over a fixed window that starts with its first attempt: one username from
one address, one username from anywhere, one address for any username. An attempt is counted
when it starts, so that many at once cannot all slip past the count while their passwords are
checked, and handed back when it succeeds. Once a counter is at its limit, sign-in waits for
that counter's window to end, and Retry-After says exactly when. A refused attempt counts
nowhere: an address already paused cannot go on to pause a username for everyone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from exporter.errors import ServiceUnavailable, TooManySignIns

# KEYS: the counters; ARGV: the window in seconds, then each counter's limit. Returns, for each
# counter at its limit, its position (1-based) and the milliseconds left of its window; nothing,
# having counted the attempt in every counter, when none is. One script, so that it is atomic.
COUNT_ATTEMPT = """
local full = {}
for i, key in ipairs(KEYS) do
    if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then
        table.insert(full, i)
        table.insert(full, redis.call('PTTL', key))
    end
end
if #full == 0 then
    for _, key in ipairs(KEYS) do
        redis.call('INCR', key)
        redis.call('EXPIRE', key, ARGV[1], 'NX')
    end
end
return full
"""

# KEYS: the pair's counter, then the username's and the address's; ARGV: the window in seconds.
# A right password clears the pair and hands back the attempt the others counted. A script
# rather than a pipeline: one call, and no pipeline object left open when a request is cancelled.
HAND_BACK_ATTEMPT = """
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do
    redis.call('DECR', KEYS[i])
    -- Should the window have just ended, the count left is not kept forever.
    redis.call('EXPIRE', KEYS[i], ARGV[1], 'NX')
end
"""

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
        """Count this attempt, or refuse it (TooManySignIns with the wait) if a counter is full."""
        counters = (self._pair, self._username, self._address)
        try:
            full = await self._redis.register_script(COUNT_ATTEMPT)(
                keys=[counter.key for counter in counters],
                args=[self._window_s, *(counter.limit for counter in counters)],
            )
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable(f"sign-in is unavailable: {exc}") from exc
        if full:
            waits = [
                (math.ceil(max(ttl_ms, 0) / 1000), counters[position - 1])
                for position, ttl_ms in zip(full[0::2], full[1::2], strict=True)
            ]
            wait_s, counter = max(waits, key=lambda wait: wait[0])
            raise TooManySignIns(
                f"{counter.refusal}; try again within {math.ceil(wait_s / 60)} minutes",
                retry_after_s=max(wait_s, 1),
            )

    async def succeeded(self) -> None:
        """The attempt was right: earlier wrong passwords from here no longer count."""
        try:
            await self._redis.register_script(HAND_BACK_ATTEMPT)(
                keys=[self._pair.key, self._username.key, self._address.key],
                args=[self._window_s],
            )
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable(f"sign-in is unavailable: {exc}") from exc
