"""Async workflows: `async with` and awaited steps, timeouts that cancel the step's task, store
calls off the event loop, and cancellation recorded as an interruption."""

from __future__ import annotations

import asyncio
import threading
from typing import List

import pytest

import waypoint
from conftest import event_types


def test_an_async_workflow_runs_coroutine_and_plain_steps_and_continues_by_key(store: waypoint.Store) -> None:
    calls: List[str] = []

    async def fetch() -> str:
        calls.append("fetch")
        await asyncio.sleep(0)
        return "mail"

    async def main() -> None:
        async with store.workflow("async-agent", name="async agent") as run:
            mail = await run.step("fetch", fetch)
            label = await run.step("classify", str.upper, mail)
            assert (mail, label) == ("mail", "MAIL")
            assert run.outputs == {"fetch": "mail", "classify": "MAIL"}
        async with store.workflow("async-agent") as run:
            assert run.is_replay
            assert await run.step("fetch", fetch) == "mail"

    asyncio.run(main())
    assert calls == ["fetch"]
    assert store.service().build_resume_summary("async-agent").status == "completed"


def test_a_timeout_cancels_the_steps_task_and_the_retry_runs_again(store: waypoint.Store) -> None:
    cancelled: List[int] = []
    attempts: List[int] = []

    async def slow_then_fast() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(1)
                raise
        return "done"

    async def main() -> str:
        async with store.workflow("async-timeout") as run:
            return await run.step("call", slow_then_fast, retries=1, timeout=0.2)

    assert asyncio.run(asyncio.wait_for(main(), 20)) == "done"
    assert (attempts, cancelled) == ([1, 2], [1])
    failed = [e.data["reason"] for e in store.service().history("async-timeout") if e.type == "step_attempt_failed"]
    assert failed == [{"kind": "timeout"}]


def test_the_last_timeout_raises_timeout_error_and_fails_the_plan(store: waypoint.Store) -> None:
    async def hangs() -> None:
        await asyncio.sleep(30)

    async def main() -> None:
        async with store.workflow("async-hangs") as run:
            await run.step("hang", hangs, timeout=0.1)

    with pytest.raises(TimeoutError, match=r"step 1 \(hang\) timed out"):
        asyncio.run(main())
    assert store.service().build_resume_summary("async-hangs").status == "failed"


def test_a_step_that_raises_its_own_timeout_error_is_an_error_not_a_timeout(store: waypoint.Store) -> None:
    async def own_timeout() -> None:
        raise asyncio.TimeoutError("the model did not answer")

    async def main() -> None:
        async with store.workflow("own-timeout") as run:
            await run.step("ask", own_timeout, timeout=5)

    with pytest.raises(asyncio.TimeoutError, match="the model did not answer"):
        asyncio.run(main())
    summary = store.service().build_resume_summary("own-timeout")
    assert summary.error is not None and "failed: TimeoutError: the model did not answer" in summary.error


def test_store_calls_run_off_the_event_loop_thread(store: waypoint.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from waypoint import _workflow

    threads: List[str] = []
    original = _workflow._off_loop

    async def spy(call, *args):  # type: ignore[no-untyped-def]
        def where(*inner):  # type: ignore[no-untyped-def]
            threads.append(threading.current_thread().name)
            return call(*inner)

        return await original(where, *args)

    monkeypatch.setattr(_workflow, "_off_loop", spy)

    async def main() -> None:
        async with store.workflow("off-loop") as run:
            await run.step("one", lambda: 1)

    asyncio.run(main())
    assert threads and all(name.startswith("waypoint-store") for name in threads), threads


def test_cancelling_the_workflows_task_records_an_interruption(store: waypoint.Store) -> None:
    started = asyncio.Event

    async def main() -> None:
        entered = started()

        async def waits() -> None:
            entered.set()
            await asyncio.sleep(30)

        async def workflow() -> None:
            async with store.workflow("cancelled") as run:
                await run.step("one", lambda: 1)
                await run.step("two", waits)

        task = asyncio.ensure_future(workflow())
        await asyncio.wait_for(entered.wait(), 20)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    summary = store.service().build_resume_summary("cancelled")
    assert summary.status == "interrupted" and summary.next_step == 2
    assert summary.interruption is not None and summary.interruption.reason == "cancelled during step 2 (two)"
    assert "step_attempt_failed" not in event_types(store, "cancelled")


def test_a_coroutine_step_in_a_sync_workflow_is_a_type_error(store: waypoint.Store) -> None:
    async def fetch() -> str:
        return "mail"

    with pytest.raises(TypeError, match="is async; run it in an async workflow"):
        with store.workflow("mixed") as run:
            run.step("fetch", fetch)
