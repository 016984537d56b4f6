"""The failed sign-in throttle, on a clock the test moves."""

from __future__ import annotations

import pytest

from spindle.auth.throttle import SignInThrottle
from spindle.errors import TooManyRequests


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_moves_on_and_a_good_password_clears_the_account() -> None:
    clock = Clock()
    throttle = SignInThrottle(per_account=3, per_address=3, window_seconds=60, clock=clock)
    for _ in range(3):
        throttle.check("alice", "192.0.2.1")
        throttle.failed("alice", "192.0.2.1")
        clock.now += 10
    with pytest.raises(TooManyRequests) as refused:
        throttle.check("alice", "192.0.2.9")  # from anywhere: the account waits
    assert refused.value.retry_after == 31  # the first failure leaves the window in 30 s
    clock.now += 31
    throttle.check("alice", "192.0.2.9")  # one failure fewer in the window
    throttle.failed("alice", None)
    with pytest.raises(TooManyRequests):
        throttle.check("alice", None)
    throttle.succeeded("alice")
    throttle.check("alice", None)
    # the address counts every account's failures: two of alice's still in the window, and bob's
    throttle.failed("bob", "192.0.2.1")
    with pytest.raises(TooManyRequests, match="this address"):
        throttle.check("carol", "192.0.2.1")
    throttle.check("carol", "192.0.2.2")


def test_zero_means_no_limit() -> None:
    throttle = SignInThrottle(per_account=0, per_address=0, window_seconds=60)
    for _ in range(100):
        throttle.failed("alice", "192.0.2.1")
    throttle.check("alice", "192.0.2.1")
