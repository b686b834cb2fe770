"""Coalescing concurrent calls into batches, without a timer.

A :class:`Batcher` has a bounded queue and ``runners`` tasks. Each runner takes what is
queued (up to ``max_batch`` items) and hands it to the batch function in one call. When
the service is idle a call is a batch of one and waits for nothing; under load, calls
queue while the runners are busy and the next batch takes them all: one warehouse round
trip, one inference request for many decisions. This is how the service keeps its
per-decision cost down on a small machine (group commit, generalised).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from dataplat.errors import ComponentError

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(ComponentError):
    """The batcher's queue is at its bound: the caller sheds the request."""


@dataclass
class _Item(Generic[T, R]):
    value: T
    future: asyncio.Future[R] = field(repr=False)


class Batcher(Generic[T, R]):
    """Batches concurrent :meth:`submit` calls (module docstring).

    ``fn`` gets a list of items and returns one result per item, in order; a result that
    is an exception is raised to that item's caller. If ``fn`` raises, every caller of the
    batch gets the error (``wrap`` turns unexpected errors into the caller's error type).
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        name: str,
        max_batch: int = 64,
        runners: int = 2,
        max_pending: int = 1024,
        wrap: Callable[[Exception], Exception] | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.max_batch = max_batch
        self.runners = runners
        self.wrap = wrap
        self._queue: asyncio.Queue[_Item[T, R]] = asyncio.Queue(max_pending)
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        """Start the runners (inside the running event loop)."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._run(), name=f"{self.name}-{i}") for i in range(self.runners)
            ]

    async def stop(self, error: Exception | None = None) -> None:
        """Stop the runners; calls still queued fail with ``error``."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(error or QueueFull(f"{self.name} is stopping"))

    @property
    def pending(self) -> int:
        """Calls waiting for a runner."""
        return self._queue.qsize()

    async def submit(self, value: T, timeout_s: float) -> R:
        """The result for ``value``; :class:`QueueFull` at the bound, :class:`TimeoutError` after
        ``timeout_s`` (the work may still be done: callers must be idempotent)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Item(value, future))
        except asyncio.QueueFull:
            raise QueueFull(f"{self._queue.maxsize} calls already wait in {self.name}") from None
        async with asyncio.timeout(timeout_s):
            return await asyncio.shield(future)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self.fn([i.value for i in batch])
            except asyncio.CancelledError:
                for i in batch:
                    if not i.future.done():
                        i.future.set_exception(QueueFull(f"{self.name} is stopping"))
                raise
            except Exception as exc:  # noqa: BLE001 - every caller of the batch must hear about it
                err = self.wrap(exc) if self.wrap is not None else exc
                for i in batch:
                    if not i.future.done():
                        i.future.set_exception(err)
                continue
            self.batches += 1
            self.items += len(batch)
            for i, r in zip(batch, results, strict=True):
                if i.future.done():
                    continue
                if isinstance(r, BaseException):
                    i.future.set_exception(r)
                else:
                    i.future.set_result(r)
