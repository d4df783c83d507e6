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
        if delay[0]:
            threading.Event().wait(delay[0])  # a wait (a thread pool, a GPU): wall time, as a client sees it
        on_loop.append(threading.current_thread() is threading.main_thread())
        return rows

    uncalibrated = batcher(model)
    asyncio.run(uncalibrated.submit([1], 1))
    assert on_loop == [False]  # its cost unknown: a thread

    on_loop.clear()
    fast = batcher(model)
    fast.calibrate([1], 1)

    async def scenario(b, n):
        for _ in range(n):
            assert await b.submit([1], 1) == [1]

    asyncio.run(scenario(fast, 3))
    assert on_loop[6:] == [True, True, True]  # after calibrate's six calls: fast, so on the loop

    on_loop.clear()
    delay[0] = 0.005
    waits = batcher(model)
    waits.calibrate([1], 1)
    asyncio.run(scenario(waits, 30))
    assert not any(on_loop[6:]), "a model that waits 5 ms a call never blocks the loop"


def test_a_model_slowed_on_the_loop_moves_to_a_thread_at_once_and_is_tried_on_the_loop_again_later():
    """Thread calls are not timed (their wall time counts waits for the GIL while the loop works): a slow
    call on the loop moves the model to a thread at once, and after a while it is tried on the loop again."""
    on_loop, delay = [], [0.0]

    def model(rows):
        on_loop.append(threading.current_thread() is threading.main_thread())
        if delay[0]:
            threading.Event().wait(delay[0])
        return rows

    b = batcher(model)
    b.calibrate([1], 1)
    on_loop.clear()

    async def scenario():
        assert await b.submit([1], 1) == [1]
        delay[0] = 0.02  # slowed for one call (a busy machine)
        assert await b.submit([1], 1) == [1]
        delay[0] = 0.0
        for _ in range(60):
            assert await b.submit([1], 1) == [1]

    asyncio.run(scenario())
    assert on_loop[:3] == [True, True, False], on_loop[:5]
    back = on_loop.index(True, 2)
    assert 3 < back < 62 and all(on_loop[back:]), on_loop
