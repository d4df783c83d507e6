"""The micro-batcher: a lone request is answered at once, requests arriving during a model call form
the next batch, and a bad request in a batch fails alone."""
import asyncio
import threading
import time

from serving.batching import MicroBatcher


class SlowModel:
    """Answers each row with its double; holds the first call until released, so the test decides
    what arrives while the model is busy."""

    def __init__(self):
        self.calls, self.release = [], threading.Event()

    def __call__(self, rows):
        self.calls.append(list(rows))
        if len(self.calls) == 1:
            self.release.wait(5)
        if any(r < 0 for r in rows):
            raise ValueError("negative row")
        return [2 * r for r in rows]


def batcher(model, **kw):
    return MicroBatcher(model, lambda parts: [r for p in parts for r in p],
                        lambda out, sizes: [out[sum(sizes[:i]):sum(sizes[:i + 1])] for i in range(len(sizes))], **kw)


def test_requests_arriving_during_a_model_call_form_the_next_batch():
    model = SlowModel()
    b = batcher(model)

    async def scenario():
        first = asyncio.ensure_future(b.submit([1], 1))
        while not model.calls:  # the lone first request went to the model without waiting for company
            await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(b.submit([k], 1)) for k in range(2, 9)]
        await asyncio.sleep(0.05)
        model.release.set()
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(scenario())
    assert first == [2] and rest == [[2 * k] for k in range(2, 9)]
    assert model.calls == [[1], list(range(2, 9))] and b.batch_sizes == [1, 7]


def test_a_bad_request_fails_alone_and_the_batch_is_answered():
    model = SlowModel()
    model.release.set()
    b = batcher(model)

    async def scenario():
        return await asyncio.gather(b.submit([1], 1), b.submit([-1], 1), b.submit([3], 1), return_exceptions=True)

    good, bad, other = asyncio.run(scenario())
    assert good == [2] and other == [6]
    assert isinstance(bad, ValueError) and "negative row" in str(bad)


def test_a_batch_holds_at_most_max_batch_rows():
    model = SlowModel()
    b = batcher(model, max_batch_rows=3)

    async def scenario():
        first = asyncio.ensure_future(b.submit([0], 1))
        while not model.calls:
            await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(b.submit([k], 1)) for k in range(1, 7)]
        await asyncio.sleep(0.05)
        model.release.set()
        await first
        return await asyncio.gather(*rest)

    assert asyncio.run(scenario()) == [[2 * k] for k in range(1, 7)]
    assert b.batch_sizes == [1, 3, 3]


def test_calls_of_under_a_millisecond_run_on_the_loop_and_slower_ones_in_a_worker_thread():
    on_loop, delay = [], [0.0]

    def model(rows):
        on_loop.append(threading.current_thread() is threading.main_thread())
        started = time.thread_time()
        while time.thread_time() - started < delay[0]:  # CPU work: what the estimate counts
            pass
        return rows

    b = batcher(model)

    async def scenario():
        for _ in range(4):
            assert await b.submit([1], 1) == [1]
        delay[0] = 0.005
        for _ in range(3):
            assert await b.submit([1], 1) == [1]

    asyncio.run(scenario())
    # the first call's cost is unknown: a thread; then fast calls stay on the loop; the first slow one
    # (expected fast) runs there once, and from then on the model runs in a thread
    assert on_loop == [False, True, True, True, True, False, False]


def test_a_call_in_a_thread_is_costed_by_its_cpu_time_not_by_its_waits_for_the_event_loop():
    """In a worker thread the model waits for the GIL while the loop parses requests; counted as the
    call's cost, that wait would keep a fast model in a thread for good. A call that waits (here on an
    event) costs nothing, so the next one comes back to the loop."""
    on_loop = []

    def model(rows):
        on_loop.append(threading.current_thread() is threading.main_thread())
        if len(on_loop) == 1:
            threading.Event().wait(0.02)  # the first call (in a thread) waits 20 ms without computing
        return rows

    b = batcher(model)

    async def scenario():
        for _ in range(3):
            assert await b.submit([1], 1) == [1]

    asyncio.run(scenario())
    assert on_loop == [False, True, True]
