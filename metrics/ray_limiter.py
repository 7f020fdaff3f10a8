"""One run-wide `Limiter` for the Ray engine: a metric's `SharedLimit` (the judge's `--judge-concurrency`) holds
across all the scoring actors, not per actor.

A small async actor counts the slots; each actor's copy of the metric acquires one around each request. Ray has no
distributed semaphore of its own (`ray.util` has queues and pools only), hence this one. A slot whose holder died
or hung is taken back after its lease, so a lost release never stalls the run; releases are fire-and-forget, so a
release never blocks or fails a request.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from selector.core.metric_api import SharedLimit


class Slots:
    """The counter (run as an async Ray actor: waiting acquirers do not block releases)."""

    def __init__(self, slots: int, lease_s: float):
        self.slots, self.lease_s = max(1, int(slots)), float(lease_s)
        self.held: dict[str, float] = {}  # token -> when its lease ends (monotonic seconds)
        self.epoch = uuid.uuid4().hex[:8]  # tokens of an earlier incarnation of this actor release nothing
        self.issued = self.peak = self.expired = 0
        self._changed: asyncio.Condition | None = None  # see _condition

    def _reclaim(self, now: float) -> None:
        for token in [t for t, end in self.held.items() if end <= now]:
            del self.held[token]
            self.expired += 1

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # made on the actor's event loop, at first use
            self._changed = asyncio.Condition()
        return self._changed

    async def acquire(self) -> str:
        async with self._condition():
            while True:
                now = time.monotonic()
                self._reclaim(now)
                if len(self.held) < self.slots:
                    break
                try:  # wake on a release, or when the oldest lease ends
                    await asyncio.wait_for(self._changed.wait(), max(0.0, min(self.held.values()) - now))
                except asyncio.TimeoutError:
                    pass
            self.issued += 1
            token = f"{self.epoch}-{self.issued}"
            self.held[token] = now + self.lease_s
            self.peak = max(self.peak, len(self.held))
            return token

    async def release(self, token: str) -> None:
        async with self._condition():
            if self.held.pop(token, None) is not None:
                self._changed.notify()

    async def counters(self) -> dict[str, int]:
        """Slots, acquisitions, the most held at once, and leases taken back."""
        return {"slots": self.slots, "acquired": self.issued, "peak": self.peak, "expired": self.expired}


class RayLimiter:
    """The `Limiter` that every actor's metric holds: a handle on the run's `Slots` actor (picklable)."""

    def __init__(self, handle: Any):
        self.handle = handle

    def acquire(self) -> str:
        import ray

        return ray.get(self.handle.acquire.remote())

    def release(self, token: Any) -> None:
        # not retried: a release lost to a restarting (or, at the end of the run, killed) counter frees nothing the
        # lease would not, and a retry would only log noise
        self.handle.release.options(max_task_retries=0).remote(token)

    def counters(self) -> dict[str, int]:
        import ray

        return ray.get(self.handle.counters.remote())

    def close(self) -> None:
        import ray

        ray.kill(self.handle)


def start_limiter(limit: SharedLimit) -> RayLimiter:
    """A new `Slots` actor for one run (no CPU of its own: it only counts). Ray restarts it if its process dies;
    waiting acquires are retried, and slots held before are free again."""
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(Slots)
    return RayLimiter(actor.remote(limit.slots, limit.lease_s))
