"""Adaptive micro-batching: concurrent requests are predicted together in one model call.

Batches form by themselves: while the model answers one batch, the requests that arrive queue
up, and the next batch takes all of them (up to ``max_batch_rows`` rows). A request that finds
the model idle is answered at once; ``max_wait_ms`` (0 by default) makes it wait that long for
company, which only pays when requests arrive faster than one model call yet not during one. A model
call expected to take over a millisecond runs in a worker thread so the event loop keeps accepting
requests meanwhile; shorter ones run on the loop, where handing them to a thread and back would cost
more than the call. If a batch fails, its requests are retried one by
one, so a bad request gets its own error and never fails the others. A request whose caller gave up (timeout,
disconnect) is dropped from its batch instead of answered.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Sequence


INLINE_S = 0.001


class MicroBatcher:
    def __init__(self, predict: Callable[[list], Any], join: Callable[[Sequence], Any],
                 split: Callable[[Any, list[int]], list], max_batch_rows: int = 256, max_wait_ms: float = 0.0,
                 on_batch: Callable[[int, int], None] | None = None):
        self.predict, self.join, self.split, self.on_batch = predict, join, split, on_batch
        self.max_batch_rows, self.max_wait = max_batch_rows, max_wait_ms / 1000
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self.batch_sizes: list[int] = []  # recent batch sizes, for metrics and tests
        # What a call of n rows takes, fixed + per_row * n seconds of wall time (``calibrate``), times a
        # slowdown that slow calls on the loop raise: uncalibrated, every call goes to a thread.
        self._fixed, self._per_row, self._slowdown = float("inf"), 0.0, 1.0

    def calibrate(self, records, n_rows: int, repeat: int = 32) -> None:
        """Time the model before serving, when nothing else runs (wall time, so work the model hands to
        its own threads, a GPU or a wait counts): these records alone and ``repeat`` of them stacked."""
        def best(batch) -> float:
            times = []
            for _ in range(3):
                started = time.perf_counter()
                self.predict(batch)
                times.append(time.perf_counter() - started)
            return min(times)

        one, many = best(records), best(self.join([records] * repeat))
        self._per_row = max((many - one) / (n_rows * (repeat - 1)), 0.0)
        self._fixed = max(one - self._per_row * n_rows, 0.0)

    async def submit(self, records, n_rows: int):
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((records, n_rows, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            rows = batch[0][1]
            deadline = time.monotonic() + self.max_wait
            while rows < self.max_batch_rows:
                if not self._queue.empty():  # what queued while the model was busy: no waiting
                    item = self._queue.get_nowait()
                else:
                    timeout = deadline - time.monotonic()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), timeout)
                    except asyncio.TimeoutError:
                        break
                batch.append(item)
                rows += item[1]
            batch = [item for item in batch if not item[2].done()]
            if not batch:
                continue
            self.batch_sizes = (self.batch_sizes + [len(batch)])[-1000:]
            if self.on_batch:
                self.on_batch(len(batch), sum(n for _, n, _ in batch))
            await self._predict_batch(batch)

    async def _call(self, records, n_rows: int):
        """The model on this batch: on the event loop when it is expected to take under ``INLINE_S``,
        in a worker thread otherwise, so long calls never hold up other requests. Only calls on the loop
        are timed (in a thread the wall time also counts waits for the GIL while the loop parses
        requests): one that took longer than expected raises the slowdown at once, and each call in a
        thread lowers it a little, so a model slowed for a while (a busy machine) is tried on the loop
        again later."""
        expected = self._fixed + self._per_row * n_rows
        if expected * self._slowdown >= INLINE_S:
            self._slowdown = max(1.0, 0.9 * self._slowdown)
            return await asyncio.to_thread(self.predict, records)
        started = time.perf_counter()
        out = self.predict(records)
        ratio = (time.perf_counter() - started) / max(expected, 1e-9)
        self._slowdown = max(1.0, ratio if ratio > self._slowdown else 0.8 * self._slowdown + 0.2 * ratio)
        return out

    async def _predict_batch(self, batch: list) -> None:
        try:
            joined = self.join([records for records, _, _ in batch])
            outputs = self.split(await self._call(joined, sum(n for _, n, _ in batch)), [n for _, n, _ in batch])
        except Exception:
            if len(batch) == 1:
                records, n_rows, future = batch[0]
                try:
                    _settle(future, result=await self._call(records, n_rows))
                except Exception as exc:
                    _settle(future, error=exc)
                return
            for item in batch:  # find the culprit: each request on its own
                await self._predict_batch([item])
            return
        for (_, _, future), output in zip(batch, outputs):
            _settle(future, result=output)


def _settle(future: asyncio.Future, result=None, error: BaseException | None = None) -> None:
    if future.done():  # the caller timed out or went away while the model ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
