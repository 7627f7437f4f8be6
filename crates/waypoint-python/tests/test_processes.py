"""Processes: two Python processes on one key (the second gets StillRunning while the first
lives), a run killed outright mid-step continued by the next, and other Python threads running
while a workflow waits on the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import waypoint
from conftest import run_python

HOLDER = """
    import sys, time, pathlib, waypoint
    store_dir, ready, release = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    def wait_for_release():
        ready.write_text("holding")
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return "released"
    with waypoint.open(store_dir).workflow("shared-key") as run:
        print(run.step("hold", wait_for_release), flush=True)
"""


def start_holder(store_dir: Path, tmp_path: Path) -> "tuple[subprocess.Popen[str], Path]":
    ready, release = tmp_path / "ready", tmp_path / "release"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), str(store_dir), str(ready), str(release)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert holder.poll() is None, holder.communicate()
        assert time.monotonic() < deadline, "the holder never started its step"
        time.sleep(0.02)
    return holder, release


def test_a_second_process_on_a_running_key_gets_still_running(store_dir: Path, tmp_path: Path) -> None:
    holder, release = start_holder(store_dir, tmp_path)
    try:
        second = run_python(
            """
            import sys, waypoint
            try:
                with waypoint.open(sys.argv[1]).workflow("shared-key") as run:
                    run.step("hold", lambda: "ran twice")
            except waypoint.StillRunning as error:
                print(type(error).__name__, error.code, error.exit_code, [str(r) for r in error.reasons])
                sys.exit(error.exit_code)
            """,
            str(store_dir),
        )
        assert second.returncode == 5, second.stderr
        assert second.stdout.strip() == "StillRunning run_lock_busy 5 ['still_running']"
    finally:
        release.write_text("go")
        out, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, err
    assert out.strip() == "released"
    summary = waypoint.open(store_dir).service().build_resume_summary("shared-key")
    assert summary.status == "completed"


def test_a_second_workflow_on_the_same_key_in_one_process_gets_still_running(store: waypoint.Store) -> None:
    with store.workflow("one-process") as run:
        run.step("first", lambda: 1)
        with pytest.raises(waypoint.StillRunning):
            with store.workflow("one-process"):
                pass
    assert store.service().build_resume_summary("one-process").status == "completed"


def test_a_run_killed_mid_step_is_continued_by_the_next_with_the_step_run_again(store_dir: Path, tmp_path: Path) -> None:
    holder, release = start_holder(store_dir, tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate(timeout=60)
    store = waypoint.open(store_dir)
    summary = store.service().build_resume_summary("shared-key")
    assert (summary.status, summary.uncertain_step, summary.eligible) == ("crashed", 1, True)
    with store.workflow("shared-key") as run:
        assert run.resumed_from == 1
        assert run.step("hold", lambda: "second attempt") == "second attempt"
    attempts = [e.data["attempt"] for e in store.service().history("shared-key") if e.type == "step_started"]
    assert attempts == [1, 2]


def test_other_threads_run_while_a_workflow_waits_on_the_store(store: waypoint.Store) -> None:
    ticks = 0
    stop = threading.Event()

    def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        with store.workflow("gil") as run:
            for n in range(50):
                run.step(f"s{n}", lambda n=n: n)
    finally:
        stop.set()
        thread.join()
    assert ticks > 0
    assert store.service().build_resume_summary("gil").last_completed_step == 50
