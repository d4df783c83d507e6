"""Adaptive micro-batching: concurrent requests are predicted together in one model call.

Batches form by themselves: while the model answers one batch, the requests that arrive queue
up, and the next batch takes all of them (up to ``max_batch_rows`` rows). A request that finds
the model idle is answered at once; ``max_wait_ms`` (0 by default) makes it wait that long for
company, which only pays when requests arrive faster than one model call yet not during one. A model
call expected to take over a millisecond runs in a worker thread so the event loop keeps accepting
requests meanwhile; shorter ones run on the loop. If a batch fails, its requests are retried one by
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
        self._seconds_per_row = float("inf")  # unknown until a call is timed: the first goes to a thread

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
        """The model on this batch: on the event loop when the call is expected to take under
        ``INLINE_S`` (handing a call of a tenth of a millisecond to a thread and back costs more than
        the call), in a worker thread otherwise, so long calls never hold up other requests."""
        if self._seconds_per_row * n_rows < INLINE_S:
            out, elapsed = _timed(self.predict, records)
        else:
            out, elapsed = await asyncio.to_thread(_timed, self.predict, records)
        # What a row costs, smoothed; a slow call moves it at once, so the next one goes to a thread.
        per_row, known = elapsed / max(n_rows, 1), self._seconds_per_row
        self._seconds_per_row = per_row if known == float("inf") else max(per_row, 0.8 * known + 0.2 * per_row)
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


def _timed(predict, records):
    """The answer and the CPU time the calling thread spent on it. CPU, not wall time: in a worker
    thread the wall time also counts the waits for the GIL while the event loop parses requests, so a
    call sent to a thread once would look slow from then on and never come back to the loop."""
    started = time.thread_time()
    out = predict(records)
    return out, time.thread_time() - started


def _settle(future: asyncio.Future, result=None, error: BaseException | None = None) -> None:
    if future.done():  # the caller timed out or went away while the model ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
