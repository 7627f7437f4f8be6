"""Durable workflows: the Python half of the executor over Waypoint's step engine.

The engine (in Rust, reached through ``waypoint._native.Run``) decides everything that is a
rule: whether a step replays or runs, the attempt's number, whether a failure is retried and
after what delay, when the plan fails, finishes or is interrupted. This module only executes:
it calls the step's function, catches what it raises, stops an async step at its timeout by
cancelling its task, and reports each outcome to the engine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import signal
import threading
import time
import warnings
from types import TracebackType
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    NamedTuple,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
    overload,
)

from . import _native
from ._native import OutputTooLarge, Waiting
from ._records import JSON

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: The run a ``@waypoint.step`` function belongs to: set for the body of a ``with`` block, and
#: cleared while a step's own function runs (a step called inside a step is a plain call).
_active: contextvars.ContextVar[Optional[_Core]] = contextvars.ContextVar("waypoint_active_run", default=None)

_executor_lock = threading.Lock()
_executor: Optional[concurrent.futures.ThreadPoolExecutor] = None


def _store_threads() -> concurrent.futures.ThreadPoolExecutor:
    """The threads async workflows make their store calls on, apart from the event loop and
    from the loop's default executor (which the application may keep busy)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="waypoint-store")
        return _executor


async def _off_loop(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` on a store thread; the event loop keeps running meanwhile."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_store_threads(), functools.partial(call, *args))


class _Policy(NamedTuple):
    retries: int
    retry_delay: float
    timeout: Optional[float]


def _policy(retries: int, retry_delay: float, timeout: Optional[float]) -> _Policy:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int of at least 0, got {retries!r}")
    if isinstance(retry_delay, bool) or not isinstance(retry_delay, (int, float)) or not retry_delay >= 0:
        raise ValueError(f"retry_delay must be a number of seconds of at least 0, got {retry_delay!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise ValueError(f"timeout must be a number of seconds above 0, or None, got {timeout!r}")
    return _Policy(retries, float(retry_delay), None if timeout is None else float(timeout))


class _StepTimeout(BaseException):
    """Raised inside a synchronous step when its timeout alarm fires. A ``BaseException``, so
    that the step's own ``except Exception`` does not swallow it."""


def _describe(error: BaseException) -> str:
    """``ValueError: no mail``: how a failure is recorded."""
    text = str(error)
    name = type(error).__qualname__
    return f"{name}: {text}" if text else name


def _stopped_by(error: BaseException) -> Optional[str]:
    """What an interruption is recorded as, or ``None`` when ``error`` is a failure."""
    if isinstance(error, KeyboardInterrupt):
        return "KeyboardInterrupt"
    if isinstance(error, SystemExit):
        return f"SystemExit({error.code!r})" if error.code is not None else "SystemExit"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return None


def _alarm_available() -> bool:
    """A synchronous step can be stopped by a timer signal only in the main thread, and only
    when no other timer is pending (ours would replace it)."""
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )


def _call(fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any], timeout: Optional[float]) -> Any:
    """Calls ``fn`` as one attempt of a step: outside any workflow (a step called inside a step is
    a plain call), and, for a synchronous step with a timeout, under a timer. In the main thread
    the timer raises into the step (as a signal would), stopping it; elsewhere a step cannot be
    stopped, so one that returns after its timeout counts as timed out."""
    token = _active.set(None)
    try:
        if timeout is None:
            return fn(*args, **kwargs)
        if not _alarm_available():
            started = time.monotonic()
            result = fn(*args, **kwargs)
            if not inspect.isawaitable(result) and time.monotonic() - started > timeout:
                raise _StepTimeout()
            return result

        def on_alarm(signum: int, frame: Any) -> None:
            raise _StepTimeout()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return fn(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    finally:
        _active.reset(token)


async def _attempt(fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any], timeout: Optional[float]) -> Any:
    """One attempt of an async step: its coroutine runs as a task of its own, cancelled when it
    runs past ``timeout`` (or when the workflow's task is cancelled)."""
    token = _active.set(None)
    try:
        result = _call(fn, args, kwargs, timeout)
        if not inspect.isawaitable(result):
            return result
        # The task copies this context: the step's own code sees no active workflow.
        task = asyncio.ensure_future(result)
    finally:
        _active.reset(token)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: the attempt timed out whatever it did after
    raise _StepTimeout()


class _Core:
    """What the sync and the async run share: the native run, and the executor's loop."""

    def __init__(self, native: _native.Run, is_async: bool) -> None:
        self.native = native
        self.is_async = is_async

    def step(self, name: str, fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any], policy: _Policy) -> Any:
        native = self.native
        while True:
            replayed, turn = native.begin_step(name)
            if replayed:
                return turn
            kind = "error"
            failure: BaseException
            try:
                value = _call(fn, args, kwargs, policy.timeout)
                if inspect.isawaitable(value):
                    if inspect.iscoroutine(value):
                        value.close()
                    raise TypeError(
                        f"step {name!r} is async; run it in an async workflow: "
                        "`async with store.workflow(key) as run: await run.step(...)`"
                    )
            except _StepTimeout as timed_out:
                kind, failure = "timeout", timed_out
            except Exception as raised:
                failure = raised
            else:
                try:
                    native.completed(value)
                    return value
                except (TypeError, OutputTooLarge) as refused:
                    failure = refused
            delay, message = native.attempt_failed(kind, _describe(failure), *policy)
            if delay is None:
                if kind == "timeout":
                    raise TimeoutError(message) from None
                raise failure
            time.sleep(delay)

    async def step_async(
        self, name: str, fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any], policy: _Policy
    ) -> Any:
        native = self.native
        while True:
            replayed, turn = await _off_loop(native.begin_step, name)
            if replayed:
                return turn
            kind = "error"
            failure: BaseException
            try:
                value = await _attempt(fn, args, kwargs, policy.timeout)
            except _StepTimeout as timed_out:
                kind, failure = "timeout", timed_out
            except Exception as raised:
                failure = raised
            else:
                try:
                    await _off_loop(native.completed, value)
                    return value
                except (TypeError, OutputTooLarge) as refused:
                    failure = refused
            delay, message = await _off_loop(native.attempt_failed, kind, _describe(failure), *policy)
            if delay is None:
                if kind == "timeout":
                    raise TimeoutError(message) from None
                raise failure
            await asyncio.sleep(delay)

    def end(self, error: Optional[BaseException]) -> None:
        """How the ``with`` block ended: finished, interrupted, or failed."""
        native = self.native
        try:
            if error is None:
                native.finish()
                return
            if isinstance(error, Waiting):
                # The question is on record and the plan waits, holding nothing: not a failure.
                return
            stopped = _stopped_by(error)
            try:
                if stopped is not None:
                    native.interrupt(stopped)
                else:
                    native.fail(_describe(error))
            except _native.WaypointError as unrecorded:
                warnings.warn(f"waypoint could not record how run {native.plan_id} ended: {unrecorded}", RuntimeWarning, 3)
        finally:
            native.close()

    async def end_async(self, error: Optional[BaseException]) -> None:
        # Shielded: a second cancellation does not stop the record of the first.
        await asyncio.shield(_off_loop(self.end, error))


class _RunBase:
    _core: _Core

    @property
    def plan_id(self) -> str:
        """The workflow's plan: its key, or for a fresh start of a finished key, the new plan."""
        return self._core.native.plan_id

    @property
    def resumed_from(self) -> Optional[int]:
        """The step this run continues from, when it continues an earlier run."""
        return self._core.native.resumed_from

    @property
    def is_replay(self) -> bool:
        """Whether this run replays a finished workflow: every step returns its recorded output."""
        return self._core.native.is_replay

    @property
    def outputs(self) -> Dict[str, JSON]:
        """Every completed step's output so far, by step name."""
        return cast(Dict[str, JSON], self._core.native.outputs())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.plan_id!r}>"


class Run(_RunBase):
    """One run of a durable workflow, in a ``with store.workflow(key) as run:`` block."""

    def __init__(self, core: _Core) -> None:
        self._core = core

    def step(
        self,
        name: str,
        fn: Callable[..., T],
        *args: Any,
        retries: int = 0,
        retry_delay: float = 0.0,
        timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> T:
        """Runs ``fn(*args, **kwargs)`` as the next step, named ``name``, and returns its value,
        recorded as the step's output (JSON, at most 1 MiB). A step that completed in an earlier
        run returns its recorded output and ``fn`` is not called.

        A raised exception is a failed attempt: tried again up to ``retries`` times, after
        ``retry_delay`` seconds doubled each time; the last one fails the plan and is raised.
        ``timeout`` stops an attempt that runs longer (in the main thread; elsewhere an attempt
        that returns late counts as timed out), raising ``TimeoutError`` after the last.
        """
        policy = _policy(retries, retry_delay, timeout)
        return cast(T, self._core.step(name, fn, args, kwargs, policy))

    def approval(self, name: str, question: str) -> Dict[str, JSON]:
        """An approval step: a person must answer ``question`` before the workflow goes on. The
        first run that reaches it records the question and raises :class:`waypoint.Waiting` (the
        plan is ``waiting``, holding nothing); once someone approved it (``waypoint plan approve
        KEY``), the next run records the decision as this step's output and returns it
        (``{"approved", "by", "at", "note"}``); later runs get it back. A rejection fails the
        plan (``approval_rejected``)."""
        return cast(Dict[str, JSON], self._core.native.approval(name, question))


class AsyncRun(_RunBase):
    """One run of a durable workflow, in an ``async with store.workflow(key) as run:`` block.
    Store calls run on threads of their own: the event loop never waits on the disk."""

    def __init__(self, core: _Core) -> None:
        self._core = core

    @overload
    async def step(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        retries: int = 0,
        retry_delay: float = 0.0,
        timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> T: ...

    @overload
    async def step(
        self,
        name: str,
        fn: Callable[..., T],
        *args: Any,
        retries: int = 0,
        retry_delay: float = 0.0,
        timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> T: ...

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retries: int = 0,
        retry_delay: float = 0.0,
        timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> Any:
        """Runs the next step as :meth:`Run.step` does; ``fn`` may be a coroutine function, whose
        task is cancelled when it runs past ``timeout``."""
        policy = _policy(retries, retry_delay, timeout)
        return await self._core.step_async(name, fn, args, kwargs, policy)

    async def approval(self, name: str, question: str) -> Dict[str, JSON]:
        """An approval step, as :meth:`Run.approval`, with the store call off the event loop."""
        return cast(Dict[str, JSON], await _off_loop(self._core.native.approval, name, question))


class Workflow:
    """``store.workflow(key)``: enter it with ``with`` (a :class:`Run`) or ``async with`` (an
    :class:`AsyncRun`). Entering creates the key's plan, continues it, or replays it when it
    finished; another process running the key raises :class:`waypoint.StillRunning`.

    Leaving the block completes the plan; an exception records the failure and propagates;
    ``KeyboardInterrupt``, ``SystemExit`` and task cancellation record the interruption and
    propagate."""

    def __init__(self, store: _native.Store, key: str, name: Optional[str], new: bool) -> None:
        self._store = store
        self._key = key
        self._name = name
        self._new = new
        self._core: Optional[_Core] = None
        self._token: Optional[contextvars.Token[Optional[_Core]]] = None

    def _begin(self, is_async: bool, native: _native.Run) -> _Core:
        core = _Core(native, is_async)
        self._core = core
        self._token = _active.set(core)
        return core

    def _check_unused(self) -> None:
        if self._core is not None:
            raise RuntimeError(f"workflow {self._key!r} is already running in this block; call store.workflow() again")

    def __enter__(self) -> Run:
        self._check_unused()
        native = self._store.begin(self._key, self._name, self._new)
        return Run(self._begin(False, native))

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        core, token = self._core, self._token
        assert core is not None and token is not None
        try:
            core.end(exc)
        finally:
            _active.reset(token)
            self._core, self._token = None, None

    async def __aenter__(self) -> AsyncRun:
        self._check_unused()
        native = await _off_loop(self._store.begin, self._key, self._name, self._new)
        return AsyncRun(self._begin(True, native))

    async def __aexit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        core, token = self._core, self._token
        assert core is not None and token is not None
        try:
            await core.end_async(exc)
        finally:
            _active.reset(token)
            self._core, self._token = None, None


@overload
def step(fn: F, /) -> F: ...


@overload
def step(
    *,
    name: Optional[str] = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    timeout: Optional[float] = None,
) -> Callable[[F], F]: ...


def step(
    fn: Optional[F] = None,
    /,
    *,
    name: Optional[str] = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    timeout: Optional[float] = None,
) -> Union[F, Callable[[F], F]]:
    """Makes a function a step of whatever workflow is active in this thread or task (its name
    is the function's, unless ``name`` is given). Called outside a workflow, or inside another
    step, it is a plain call. An ``async def`` becomes an async step of an async workflow."""
    policy = _policy(retries, retry_delay, timeout)

    def decorate(function: F) -> F:
        step_name = name if name is not None else function.__name__
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_step(*args: Any, **kwargs: Any) -> Any:
                core = _active.get()
                if core is None:
                    return await function(*args, **kwargs)
                return await core.step_async(step_name, function, args, kwargs, policy)

            return cast(F, async_step)

        @functools.wraps(function)
        def sync_step(*args: Any, **kwargs: Any) -> Any:
            core = _active.get()
            if core is None:
                return function(*args, **kwargs)
            if core.is_async:
                raise TypeError(
                    f"step {step_name!r} is synchronous but the workflow is async: make it `async def`, "
                    "or call it through `await run.step(...)`"
                )
            return core.step(step_name, function, args, kwargs, policy)

        return cast(F, sync_step)

    if fn is not None:
        return decorate(fn)
    return decorate
