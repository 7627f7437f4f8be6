"""`@waypoint.step`: a function becomes a step of the workflow active in this thread or task
(a contextvars context), and a plain call anywhere else."""

from __future__ import annotations

import asyncio
import threading
from typing import List

import pytest

import waypoint

calls: List[str] = []


@waypoint.step
def fetch(folder: str) -> List[str]:
    calls.append(f"fetch {folder}")
    return [f"{folder}/1", f"{folder}/2"]


@waypoint.step(name="classify-mail", retries=2)
def classify(message: str) -> str:
    calls.append(f"classify {message}")
    if len([c for c in calls if c.startswith("classify")]) == 1:
        raise RuntimeError("the model was busy")
    return "billing"


@waypoint.step
def outer() -> str:
    # Inside a step, another step is a plain call: not recorded on its own.
    return fetch("inner")[0]


@waypoint.step(timeout=5)
async def summarise(text: str) -> str:
    await asyncio.sleep(0)
    calls.append(f"summarise {text}")
    return text.upper()


@pytest.fixture(autouse=True)
def no_calls() -> None:
    calls.clear()


def test_decorated_functions_are_steps_inside_a_workflow_and_plain_calls_outside(store: waypoint.Store) -> None:
    assert fetch("plain") == ["plain/1", "plain/2"]
    with store.workflow("decorated") as run:
        messages = fetch("inbox")
        assert classify(messages[0]) == "billing"
        assert outer() == "inner/1"
    assert calls == ["fetch plain", "fetch inbox", "classify inbox/1", "classify inbox/1", "fetch inner"]
    assert list(run.outputs) == ["fetch", "classify-mail", "outer"]
    with store.workflow("decorated") as run:
        assert fetch("inbox") == ["inbox/1", "inbox/2"]
        assert classify("ignored") == "billing"
        assert outer() == "inner/1"
    assert len(calls) == 5, "a replay calls nothing"
    assert fetch.__name__ == "fetch" and classify.__name__ == "classify"


def test_another_thread_sees_no_workflow(store: waypoint.Store) -> None:
    with store.workflow("threads") as run:
        thread = threading.Thread(target=fetch, args=("thread",))
        thread.start()
        thread.join()
        fetch("main")
    assert run.outputs == {"fetch": ["main/1", "main/2"]}
    assert calls == ["fetch thread", "fetch main"]


def test_an_async_step_works_in_an_async_workflow_and_a_sync_one_asks_to_be_async(store: waypoint.Store) -> None:
    async def main() -> None:
        assert await summarise("plain") == "PLAIN"
        async with store.workflow("async-decorated") as run:
            assert await summarise("mail") == "MAIL"
            assert run.outputs == {"summarise": "MAIL"}
            with pytest.raises(TypeError, match="step 'fetch' is synchronous but the workflow is async"):
                fetch("inbox")

    asyncio.run(main())
    assert calls == ["summarise plain", "summarise mail"]
    assert store.service().build_resume_summary("async-decorated").status == "completed"


def test_two_tasks_each_run_their_own_workflow(store: waypoint.Store) -> None:
    async def agent(key: str) -> List[str]:
        async with store.workflow(key):
            first = await summarise(f"{key}-a")
            await asyncio.sleep(0.01)
            second = await summarise(f"{key}-b")
            return [first, second]

    async def main() -> List[List[str]]:
        return list(await asyncio.gather(agent("task-1"), agent("task-2")))

    assert asyncio.run(main()) == [["TASK-1-A", "TASK-1-B"], ["TASK-2-A", "TASK-2-B"]]
    service = store.service()
    assert service.build_resume_summary("task-1").last_completed_step == 2
    assert service.build_resume_summary("task-2").last_completed_step == 2
