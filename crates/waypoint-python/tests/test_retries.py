"""Failed attempts, retries and timeouts of synchronous steps: the engine's one failure rule,
with the Python executor only calling, catching and timing."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List

import pytest

import waypoint
from conftest import event_types


class Flaky:
    """Fails its first ``failures`` calls, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"attempt {self.calls} lost the connection")
        return "answer"


def test_a_failed_attempt_is_retried_after_a_doubling_delay(store: waypoint.Store) -> None:
    flaky = Flaky(2)
    started = time.monotonic()
    with store.workflow("flaky") as run:
        assert run.step("call", flaky, retries=2, retry_delay=0.1) == "answer"
    assert flaky.calls == 3
    assert time.monotonic() - started >= 0.1 + 0.2, "waited 0.1 s, then 0.2 s"
    history = store.service().history("flaky")
    failed = [e.data for e in history if e.type == "step_attempt_failed"]
    assert [f["attempt"] for f in failed] == [1, 2]
    reasons: List[Dict[str, Any]] = [f["reason"] for f in failed]
    assert reasons[0] == {"kind": "error", "message": "failed: ConnectionError: attempt 1 lost the connection"}


def test_the_last_failed_attempt_fails_the_plan_and_raises_the_original_exception(store: waypoint.Store) -> None:
    flaky = Flaky(5)
    with pytest.raises(ConnectionError, match="attempt 2 lost the connection"):
        with store.workflow("gives-up") as run:
            run.step("call", flaky, retries=1)
    assert flaky.calls == 2
    summary = store.service().build_resume_summary("gives-up")
    assert summary.status == "failed" and summary.eligible
    assert summary.error == "step 1 (call) failed: ConnectionError: attempt 2 lost the connection"
    # A rerun gets its retries again, and its attempts count on from the earlier run's.
    with store.workflow("gives-up") as run:
        assert run.step("call", flaky, retries=5) == "answer"
    history = store.service().history("gives-up")
    assert [e.data["attempt"] for e in history if e.type == "step_started"] == [1, 2, 3, 4, 5, 6]


def test_a_waypoint_error_raised_by_the_step_itself_is_a_failed_attempt(store: waypoint.Store) -> None:
    def reads_a_missing_plan() -> None:
        store.service().build_resume_summary("no-such-plan")

    with pytest.raises(waypoint.PlanNotFound):
        with store.workflow("uses-waypoint") as run:
            run.step("lookup", reads_a_missing_plan)
    assert store.service().build_resume_summary("uses-waypoint").status == "failed"


def test_a_synchronous_step_in_the_main_thread_is_stopped_at_its_timeout(store: waypoint.Store) -> None:
    stopped = []

    def hangs() -> None:
        try:
            time.sleep(30)
        finally:
            stopped.append(True)

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"step 1 \(hang\) timed out \(it ran past its timeout of 200ms"):
        with store.workflow("hangs") as run:
            run.step("hang", hangs, retries=1, timeout=0.2)
    assert time.monotonic() - started < 10
    assert stopped == [True, True], "each attempt was stopped inside the step"
    failed = [e.data for e in store.service().history("hangs") if e.type == "step_attempt_failed"]
    assert failed == [{"step": 1, "attempt": 1, "reason": {"kind": "timeout"}, "retry_at": failed[0]["retry_at"]}]
    summary = store.service().build_resume_summary("hangs")
    assert summary.status == "failed" and summary.error is not None and "timed out" in summary.error


def test_a_step_that_catches_exception_is_still_stopped_at_its_timeout(store: waypoint.Store) -> None:
    def swallows() -> str:
        try:
            time.sleep(30)
        except Exception:
            return "swallowed"
        return "slept"

    with pytest.raises(TimeoutError):
        with store.workflow("swallows") as run:
            run.step("s", swallows, timeout=0.2)


def test_a_step_in_another_thread_that_returns_after_its_timeout_counts_as_timed_out(store: waypoint.Store) -> None:
    outcome: List[BaseException] = []

    def workflow() -> None:
        try:
            with store.workflow("threaded") as run:
                run.step("slow", time.sleep, 0.3, timeout=0.1)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=workflow)
    thread.start()
    thread.join()
    assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError)
    assert "step_attempt_failed" not in event_types(store, "threaded")
    assert store.service().build_resume_summary("threaded").status == "failed"


def test_a_step_within_its_timeout_is_not_disturbed_and_no_alarm_is_left_behind(store: waypoint.Store) -> None:
    import signal

    with store.workflow("quick") as run:
        assert run.step("fast", lambda: "ok", timeout=5) == "ok"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
