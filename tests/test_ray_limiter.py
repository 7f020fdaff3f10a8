"""The Ray engine's run-wide limiter, driven directly (its counter is plain asyncio; no Ray started): it never
hands out more slots than it has, a release wakes a waiter, and a holder that never releases loses its slot after
its lease instead of stalling the run."""
from __future__ import annotations

import asyncio
import time

from metrics.ray_limiter import Slots


def test_slots_bound_wake_and_take_back_a_dead_holders_slot():
    async def scenario():
        slots = Slots(2, lease_s=0.3)
        first, second = await slots.acquire(), await slots.acquire()
        waiter = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0.05)
        assert not waiter.done()  # both slots held
        await slots.release("not-a-token")  # an unknown token (an earlier incarnation's) frees nothing
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await slots.release(first)
        third = await asyncio.wait_for(waiter, 0.1)  # woken by the release, well before any lease ends
        start = time.monotonic()
        fourth = await asyncio.wait_for(slots.acquire(), 2.0)  # `second` and `third` never released: leases end
        waited = time.monotonic() - start
        return await slots.counters(), {first, second, third, fourth}, waited

    counters, tokens, waited = asyncio.run(scenario())
    assert len(tokens) == 4 and 0.1 < waited < 1.0
    assert counters == {"slots": 2, "acquired": 4, "peak": 2, "expired": 1}
