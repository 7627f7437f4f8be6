"""Durable workflows on the file store: steps recorded with their outputs, a crashed run
continued, a finished key replayed, `new=True`, step names checked, outputs checked, and how a
`with` block's end is recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import pytest

import waypoint
from conftest import event_types, run_python


def test_a_workflow_records_each_step_and_its_output_and_completes(store: waypoint.Store) -> None:
    with store.workflow("inbox", name="inbox agent") as run:
        mail = run.step("fetch", lambda: {"subject": "Invoice 42", "unread": 3})
        label = run.step("classify", lambda m: "billing" if "Invoice" in m["subject"] else "other", mail)
        assert (run.plan_id, run.resumed_from, run.is_replay) == ("inbox", None, False)
        assert run.outputs == {"fetch": {"subject": "Invoice 42", "unread": 3}, "classify": "billing"}
    assert label == "billing"
    summary = store.service().build_resume_summary("inbox")
    assert (summary.status, summary.phase, summary.state, summary.last_completed_step) == (
        "completed",
        "strategize",
        "complete",
        2,
    )
    assert event_types(store, "inbox") == [
        "plan_created",
        "phase_started",
        "step_started",
        "step_completed",
        "step_started",
        "step_completed",
        "phase_completed",
    ]


def test_every_json_type_comes_back_from_the_log_as_it_went_in(store: waypoint.Store) -> None:
    value: Any = {"none": None, "yes": True, "n": -7, "big": 2**63 + 5, "x": 0.1, "s": "é", "list": [1, [2, {}]]}
    with store.workflow("types") as run:
        assert run.step("all", lambda: value) == value
        run.step("nothing", lambda: None)
    with store.workflow("types") as run:
        assert run.is_replay
        assert run.step("all", lambda: "not called") == value
        assert run.step("nothing", lambda: "not called") is None


CRASHING_WORKFLOW = """
    import os, sys
    import waypoint
    store = waypoint.open(sys.argv[1])
    def step(n):
        print(f"ran {n}", flush=True)
        if os.environ.get("CRASH_AT") == str(n):
            os._exit(3)
        return {"n": n}
    with store.workflow("crashy") as run:
        for n in (1, 2, 3):
            run.step(f"s{n}", step, n)
        print("resumed_from", run.resumed_from, "outputs", sorted(run.outputs), flush=True)
"""


def test_a_crashed_run_continues_with_the_step_it_died_in_and_never_reruns_a_completed_one(store_dir: Path) -> None:
    crashed = run_python(CRASHING_WORKFLOW, str(store_dir), env={"CRASH_AT": "2"})
    assert crashed.returncode == 3, crashed.stderr
    assert crashed.stdout.splitlines() == ["ran 1", "ran 2"]
    summary = waypoint.open(store_dir).service().build_resume_summary("crashy")
    assert (summary.status, summary.uncertain_step, summary.next_step) == ("crashed", 2, 2)
    again = run_python(CRASHING_WORKFLOW, str(store_dir))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["ran 2", "ran 3", "resumed_from 2 outputs ['s1', 's2', 's3']"]
    history = waypoint.open(store_dir).service().history("crashy")
    step_2_attempts = [e.data["attempt"] for e in history if e.type == "step_started" and e.data["step"] == 2]
    assert step_2_attempts == [1, 2], "the rerun of step 2 is its second attempt"


def test_a_finished_key_replays_without_running_anything_until_new_starts_afresh(store: waypoint.Store) -> None:
    calls: List[str] = []

    def fetch() -> str:
        calls.append("fetch")
        return "mail"

    with store.workflow("nightly") as run:
        run.step("fetch", fetch)
    with store.workflow("nightly") as run:
        assert run.is_replay and run.plan_id == "nightly"
        assert run.step("fetch", fetch) == "mail"
        assert run.outputs == {"fetch": "mail"}
        with pytest.raises(waypoint.InvalidState, match="finished without a step 2; run it with new=True"):
            run.step("more", fetch)
    assert calls == ["fetch"]
    with store.workflow("nightly", new=True) as run:
        assert not run.is_replay
        assert run.plan_id.startswith("nightly-g2-")
        run.step("fetch", fetch)
    assert calls == ["fetch", "fetch"]
    assert store.service().build_resume_summary("nightly").status == "completed"


def test_a_step_called_by_another_name_at_a_completed_position_is_a_step_mismatch(store_dir: Path) -> None:
    assert run_python(CRASHING_WORKFLOW, str(store_dir), env={"CRASH_AT": "2"}).returncode == 3
    store = waypoint.open(store_dir)
    with pytest.raises(waypoint.StepMismatch) as raised:
        with store.workflow("crashy") as run:
            run.step("renamed", lambda: 1)
    assert (raised.value.code, raised.value.exit_code) == ("step_mismatch", 7)
    assert isinstance(raised.value, waypoint.InvalidState)
    assert '"s1"' in str(raised.value) and '"renamed"' in str(raised.value)
    summary = store.service().build_resume_summary("crashy")
    assert summary.status == "failed" and summary.error is not None and "StepMismatch" in summary.error


def test_a_replayed_step_is_checked_by_name_too(store: waypoint.Store) -> None:
    with store.workflow("done") as run:
        run.step("fetch", lambda: 1)
    with pytest.raises(waypoint.StepMismatch):
        with store.workflow("done") as run:
            run.step("other", lambda: 1)


def test_an_output_that_is_not_json_is_a_type_error_naming_the_step_recorded_as_a_failed_attempt(
    store: waypoint.Store,
) -> None:
    with pytest.raises(TypeError, match=r"step 2 \(tags\) returned a set, which is not a JSON value"):
        with store.workflow("bad-output") as run:
            run.step("ok", lambda: 1)
            run.step("tags", lambda: {"a", "b"})
    summary = store.service().build_resume_summary("bad-output")
    assert summary.status == "failed" and summary.next_step == 2
    assert summary.error is not None and "step 2 (tags) failed: TypeError" in summary.error
    refused = [
        ({"k": (1, 2)}, r"a tuple at \[\"k\"\], which is not a JSON value"),
        ({"k": {1: "x"}}, r"a dict key of type int at \[\"k\"\], and JSON keys are str"),
        ([float("nan")], r"the float NaN at \[0\], which JSON cannot hold"),
        (2**64, "beyond the 64 bits"),
    ]
    for value, where in refused:
        with pytest.raises(TypeError, match=where):
            with store.workflow("bad-output", new=True) as run:
                run.step("value", lambda v: v, value)


def test_a_failed_output_is_retried_like_any_failed_attempt(store: waypoint.Store) -> None:
    answers: List[Any] = [{"a", "b"}, ["a", "b"]]
    with store.workflow("retry-output") as run:
        assert run.step("tags", answers.pop, 0, retries=1) == ["a", "b"]
    assert event_types(store, "retry-output").count("step_attempt_failed") == 1


def test_an_output_over_one_mebibyte_is_output_too_large(store: waypoint.Store) -> None:
    with pytest.raises(waypoint.OutputTooLarge) as raised:
        with store.workflow("huge") as run:
            run.step("blob", lambda: "x" * (1024 * 1024 + 1))
    assert (raised.value.code, raised.value.exit_code) == ("output_too_large", 2)
    assert isinstance(raised.value, waypoint.InvalidValue)


def test_an_exception_outside_a_step_fails_the_plan_and_the_next_run_continues_there(store: waypoint.Store) -> None:
    with pytest.raises(ValueError, match="no mail"):
        with store.workflow("body") as run:
            run.step("fetch", lambda: [])
            raise ValueError("no mail")
    summary = store.service().build_resume_summary("body")
    assert summary.status == "failed" and summary.eligible
    assert summary.error == "the run failed before step 2: ValueError: no mail"
    with store.workflow("body") as run:
        assert run.resumed_from == 2
        assert run.step("fetch", lambda: ["not called"]) == []
        run.step("reply", lambda: "sent")
    assert store.service().build_resume_summary("body").status == "completed"


def test_keyboard_interrupt_in_a_step_records_the_interruption_and_propagates(store: waypoint.Store) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with store.workflow("ctrl-c") as run:
            run.step("fetch", lambda: 1)
            run.step("classify", interrupted, retries=3)
    summary = store.service().build_resume_summary("ctrl-c")
    assert (summary.status, summary.next_step, summary.uncertain_step) == ("interrupted", 2, 2)
    assert summary.interruption is not None
    assert summary.interruption.reason == "KeyboardInterrupt during step 2 (classify)"
    assert "step_attempt_failed" not in event_types(store, "ctrl-c"), "an interruption is not a failed attempt"
    with store.workflow("ctrl-c") as run:
        assert run.resumed_from == 2
        assert run.step("fetch", lambda: 2) == 1
        assert run.step("classify", lambda: "billing") == "billing"


def test_system_exit_between_steps_records_the_interruption(store: waypoint.Store) -> None:
    with pytest.raises(SystemExit):
        with store.workflow("exit") as run:
            run.step("fetch", lambda: 1)
            raise SystemExit(4)
    summary = store.service().build_resume_summary("exit")
    assert summary.status == "interrupted"
    assert summary.interruption is not None and summary.interruption.reason == "SystemExit(4) before step 2"


def test_a_run_cannot_be_used_after_its_block(store: waypoint.Store) -> None:
    with store.workflow("ended") as run:
        run.step("one", lambda: 1)
    with pytest.raises(waypoint.InvalidState, match="has ended"):
        run.step("two", lambda: 2)


def test_bad_keys_and_locations_are_invalid_values_with_the_cli_codes(store: waypoint.Store, tmp_path: Path) -> None:
    with pytest.raises(waypoint.InvalidValue) as bad_key:
        with store.workflow("not a key"):
            pass
    assert (bad_key.value.code, bad_key.value.exit_code) == ("invalid_value", 2)
    with pytest.raises(waypoint.InvalidValue) as bad_scheme:
        waypoint.open("s3://bucket/store")
    assert (bad_scheme.value.code, bad_scheme.value.exit_code) == ("unsupported_store", 2)
    plain_file = tmp_path / "file"
    plain_file.write_text("not a store")
    with pytest.raises(waypoint.StoreUnavailable) as not_a_store:
        waypoint.open(plain_file)
    assert (not_a_store.value.code, not_a_store.value.exit_code) == ("store_unreadable", 6)
    with pytest.raises(ValueError, match="retries"):
        with store.workflow("policy") as run:
            run.step("s", lambda: 1, retries=-1)


def test_the_default_location_is_waypoint_store_else_dot_waypoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WAYPOINT_STORE", raising=False)
    assert waypoint.open().location == ".waypoint"
    monkeypatch.setenv("WAYPOINT_STORE", str(tmp_path / "elsewhere"))
    assert waypoint.open().location == str(tmp_path / "elsewhere")


def test_a_step_cannot_start_another_step_of_its_run(store: waypoint.Store) -> None:
    with pytest.raises(waypoint.InvalidState, match=r"step 1 \(outer\) of workflow nested is still running"):
        with store.workflow("nested") as run:
            run.step("outer", lambda: run.step("inner", lambda: 1))
    summary = store.service().build_resume_summary("nested")
    assert summary.status == "failed" and summary.next_step == 1


def test_an_approval_step_waits_for_a_person_then_gives_back_the_decision(store_dir: Path, waypoint_bin: Path) -> None:
    import subprocess

    store = waypoint.open(str(store_dir))
    ran: List[str] = []

    def body() -> Any:
        with store.workflow("release") as run:
            run.step("build", lambda: ran.append("build") or 1)
            decision = run.approval("deploy", "Deploy to production?")
            run.step("announce", lambda: ran.append("announce") or 2)
            return decision

    with pytest.raises(waypoint.Waiting) as waiting:
        body()
    assert waiting.value.code == "waiting"
    summary = store.service().build_resume_summary("release")
    assert summary.status == "waiting"
    with pytest.raises(waypoint.Waiting):
        body()
    approved = subprocess.run(
        [str(waypoint_bin), "--store", str(store_dir), "plan", "approve", "release", "--by", "alice"],
        capture_output=True,
        text=True,
    )
    assert approved.returncode == 0, approved.stderr
    decision = body()
    assert decision["approved"] is True and decision["by"] == "alice"
    assert ran == ["build", "announce"], "the build ran once, and the announcement after the approval"
    assert body() == decision, "a finished workflow gives the decision back"
