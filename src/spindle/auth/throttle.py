"""Throttling of failed sign-ins: after too many wrong passwords for one account, or from
one client address, within a window, further password checks for it are refused with 429
(and ``Retry-After``) without being made, until the oldest failure leaves the window.

Counted in memory, per process: behind a load balancer each ``spindle serve`` counts its
own. Only failures count; a good password clears its account's count (not the address's).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from spindle.errors import TooManyRequests

#: most accounts and addresses remembered at once (the least recently failed are dropped)
MAX_KEYS = 100_000


class SignInThrottle:
    def __init__(
        self,
        *,
        per_account: int,
        per_address: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_account = per_account
        self.per_address = per_address
        self.window = window_seconds
        self._clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def _keys(self, name: str, address: str | None) -> list[tuple[tuple[str, str], int]]:
        keys = [(("account", name), self.per_account)]
        if address:
            keys.append((("address", address), self.per_address))
        return [(key, limit) for key, limit in keys if limit > 0]

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def check(self, name: str, address: str | None) -> None:
        """Raise TooManyRequests if ``name`` or ``address`` has failed too often lately."""
        now = self._clock()
        for key, limit in self._keys(name, address):
            times = self._recent(key, now)
            if times is not None and len(times) >= limit:
                wait = times[-limit] + self.window - now
                what = "this account" if key[0] == "account" else "this address"
                raise TooManyRequests(
                    f"too many failed sign-ins for {what}; try again in {int(wait) + 1} s",
                    retry_after=int(wait) + 1,
                )

    def failed(self, name: str, address: str | None) -> None:
        now = self._clock()
        for key, limit in self._keys(name, address):
            times = self._recent(key, now)
            if times is None:
                times = self._failures[key] = deque(maxlen=limit)
            times.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, name: str) -> None:
        self._failures.pop(("account", name), None)
