"""The runtimes a benchmark subprocess can run on, behind one small ``Runtime`` interface.

The workloads (``workloads.py``) and the subprocess entry points (``peers.py``) are written
once as coroutines; a runtime supplies only what differs between event loops: how to run the
main coroutine, run jobs concurrently, bound a job in time, read a line from the parent and
wait forever.

- ``asyncio`` and ``uvloop``: the asyncio-based implementations (websockets, picows,
  aiohttp, bare wsproto, the zenws asyncio adapter); the run's ``--loop`` picks which.
- ``trio``: ``trio.run`` (the zenws anyio adapter).
- ``curio``: ``curio.run`` (the zenws curio adapter).
- ``threads``: no event loop at all (the zenws blocking-sockets adapter). Its connections'
  ``async def`` methods block and never suspend, so a coroutine is driven to its end by one
  ``send(None)``; concurrent jobs run on threads, one per job.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

Job = Callable[[], Awaitable[T]]
"""A coroutine function without arguments: started by the runtime when it is its turn."""

LOOPS = ("uvloop", "asyncio")
"""The asyncio event loops a run can choose (``--loop``)."""

RUNTIMES = (*LOOPS, "trio", "curio", "threads")


class Runtime(Protocol):
    """What a benchmark subprocess needs from its concurrency runtime."""

    name: str

    def run(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``main()`` to completion (blocking the process's main thread)."""
        ...

    async def gather(self, jobs: Sequence[Job[T]]) -> list[T]:
        """Run every job concurrently; their results in order; the first error is raised."""
        ...

    async def within(self, seconds: float, job: Job[T]) -> T:
        """Run ``job``, raising ``TimeoutError`` if it takes longer than ``seconds``."""
        ...

    async def read_line(self) -> str:
        """One line from stdin (the parent's go-ahead) without blocking other tasks."""
        ...

    async def sleep_forever(self) -> None:
        """Keep a server process's background tasks running until it is killed."""
        ...


class AsyncioRuntime:
    """asyncio on the standard event loop or on uvloop."""

    def __init__(self, loop: str) -> None:
        if loop not in LOOPS:
            raise ValueError(f"unknown event loop {loop!r}")
        self.name = loop

    def run(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self.name == "uvloop":
            import uvloop

            uvloop.run(main())
        else:
            import asyncio

            asyncio.run(main())

    async def gather(self, jobs: Sequence[Job[T]]) -> list[T]:
        import asyncio

        return list(await asyncio.gather(*(job() for job in jobs)))

    async def within(self, seconds: float, job: Job[T]) -> T:
        import asyncio

        return await asyncio.wait_for(job(), seconds)

    async def read_line(self) -> str:
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def sleep_forever(self) -> None:
        import asyncio

        await asyncio.Event().wait()


class TrioRuntime:
    """Trio (the zenws anyio adapter runs on it)."""

    name = "trio"

    def run(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        import trio

        trio.run(main)

    async def gather(self, jobs: Sequence[Job[T]]) -> list[T]:
        import trio

        results: list[Any] = [None] * len(jobs)

        async def one(index: int, job: Job[T]) -> None:
            results[index] = await job()

        try:
            async with trio.open_nursery() as nursery:
                for index, job in enumerate(jobs):
                    nursery.start_soon(one, index, job)
        except BaseExceptionGroup as group:
            # Like asyncio.gather: the failure itself, not Trio's group around it.
            failures = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
            if not failures:
                raise
            raise failures[0] from None
        return results

    async def within(self, seconds: float, job: Job[T]) -> T:
        import trio

        try:
            with trio.fail_after(seconds):
                return await job()
        except trio.TooSlowError:
            raise TimeoutError(f"took longer than {seconds} s") from None

    async def read_line(self) -> str:
        import trio

        return await trio.to_thread.run_sync(sys.stdin.readline)

    async def sleep_forever(self) -> None:
        import trio

        await trio.sleep_forever()


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions inside ``group`` and its nested groups, in order."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


class CurioRuntime:
    """curio's kernel (the zenws curio adapter)."""

    name = "curio"

    def run(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        import curio

        curio.run(main)

    async def gather(self, jobs: Sequence[Job[T]]) -> list[T]:
        import curio

        tasks: list[Any] = []
        async with curio.TaskGroup() as group:
            for job in jobs:
                tasks.append(await group.spawn(job))
        # On the first failure the group cancelled the others: raise that failure itself.
        for task in tasks:
            error = task.exception
            if error is not None and not isinstance(error, curio.CancelledError):
                raise error
        return [task.result for task in tasks]

    async def within(self, seconds: float, job: Job[T]) -> T:
        import curio

        async def run() -> T:
            return await job()

        try:
            result: T = await curio.timeout_after(seconds, run)
        except curio.TaskTimeout:
            raise TimeoutError(f"took longer than {seconds} s") from None
        return result

    async def read_line(self) -> str:
        import curio

        line: str = await curio.run_in_thread(sys.stdin.readline)
        return line

    async def sleep_forever(self) -> None:
        import curio

        await curio.Event().wait()


def drive(awaitable: Awaitable[T]) -> T:
    """Run a coroutine that never suspends (the ``threads`` runtime) and return its result."""

    async def wrapper() -> T:
        return await awaitable

    coro = wrapper()
    try:
        coro.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coro.close()
    raise RuntimeError("a job on the threads runtime awaited something that suspends")


class _Worker(threading.Thread):
    """One job of the threads runtime on its own daemon thread, keeping result or error."""

    def __init__(self, job: Job[Any]) -> None:
        super().__init__(daemon=True)
        self._job = job
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = drive(self._job())
        except BaseException as exc:
            self.error = exc


class ThreadsRuntime:
    """Plain threads and blocking sockets: no event loop (the zenws sync adapter)."""

    name = "threads"

    def run(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        drive(main())

    async def gather(self, jobs: Sequence[Job[T]]) -> list[T]:
        workers = [_Worker(job) for job in jobs]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        for worker in workers:
            if worker.error is not None:
                raise worker.error
        return [worker.result for worker in workers]

    async def within(self, seconds: float, job: Job[T]) -> T:
        # A blocked thread cannot be cancelled: on timeout it is abandoned (a daemon thread),
        # the workload is reported as failed, and the parent kills the process at the end.
        worker = _Worker(job)
        worker.start()
        worker.join(seconds)
        if worker.is_alive():
            raise TimeoutError(f"took longer than {seconds} s")
        if worker.error is not None:
            raise worker.error
        result: T = worker.result
        return result

    async def read_line(self) -> str:
        return sys.stdin.readline()

    async def sleep_forever(self) -> None:
        threading.Event().wait()


def runtime_named(name: str) -> Runtime:
    """The runtime called ``name`` (one of ``RUNTIMES``)."""
    if name in LOOPS:
        return AsyncioRuntime(name)
    runtimes: dict[str, Callable[[], Runtime]] = {
        "trio": TrioRuntime,
        "curio": CurioRuntime,
        "threads": ThreadsRuntime,
    }
    if name not in runtimes:
        raise ValueError(f"unknown runtime {name!r}; expected one of {', '.join(RUNTIMES)}")
    return runtimes[name]()
