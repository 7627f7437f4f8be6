"""The plan lifecycle service: an orchestrator that drives its own steps, with frozen
dataclasses for answers and the exception family for refusals."""

from __future__ import annotations

import dataclasses

import pytest

import waypoint
from waypoint import ResumeIneligibleReason as Reason


def test_an_orchestrator_records_its_steps_stops_and_resumes_from_the_next_one(store: waypoint.Store) -> None:
    service = store.service()
    created = service.create_plan(plan_id="nightly", name="nightly report", total_steps=3)
    assert (created.plan_id, created.status, created.phase, created.reasons) == (
        "nightly",
        "not_started",
        "action",
        (Reason.ACTION_PHASE,),
    )
    metadata = service.start_phase("nightly", "strategize")
    assert metadata.total_steps == 3 and metadata.checkpoints == ()
    assert service.record_step_started("nightly", 1, "fetch-1").uncertain_step == 1
    checkpoint = service.record_step_checkpoint(
        "nightly", 1, "fetch-1", snapshot_id="snap-1", name="fetch", output={"rows": 42}
    )
    assert (checkpoint.step, checkpoint.name, checkpoint.output, checkpoint.snapshot_id) == (1, "fetch", {"rows": 42}, "snap-1")
    assert service.set_total_steps("nightly", 2).total_steps == 2
    assert service.record_shutdown("nightly", reason="deploy") is True
    assert service.record_shutdown("nightly", reason="deploy") is False, "idempotent"
    eligibility = service.validate_eligibility("nightly")
    assert (eligibility.eligible, eligibility.reasons) == (True, ())
    preview = service.resume_plan("nightly", dry_run=True)
    assert (preview.status, preview.next_step, preview.progress_percent) == ("interrupted", 2, 50)
    assert preview.interruption is not None and preview.interruption.reason == "deploy"
    resumed = service.resume_plan("nightly")
    assert (resumed.status, resumed.resume_count, resumed.next_step) == ("running", 1, 2)
    assert [p.plan_id for p in service.list_plans()] == ["nightly"]
    assert service.list_resumable() == [], "a running plan is not resumable"
    history = service.history("nightly")
    assert [e.type for e in history] == [
        "plan_created",
        "phase_started",
        "step_started",
        "step_completed",
        "total_steps_set",
        "interrupted",
        "resumed",
    ]
    assert [e.version for e in history] == list(range(1, 8))


def test_answers_are_frozen_dataclasses_whose_reasons_are_a_str_enum(store: waypoint.Store) -> None:
    summary = store.service().create_plan(plan_id="frozen")
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.status = "running"  # type: ignore[misc]
    assert summary.reasons == ("action_phase",)
    assert isinstance(summary.reasons[0], str) and summary.reasons[0] is Reason.ACTION_PHASE
    assert str(Reason.STILL_RUNNING) == "still_running"
    assert summary.to_dict()["reasons"] == ["action_phase"]
    assert type(summary.to_dict()["reasons"][0]) is str


def test_a_fork_keeps_the_steps_before_its_start(store: waypoint.Store) -> None:
    with store.workflow("source") as run:
        for name in ("a", "b", "c"):
            run.step(name, lambda n=name: n.upper())
    fork = store.service().fork_plan("source", 3, new_id="copy")
    assert (fork.plan_id, fork.last_completed_step, fork.next_step) == ("copy", 2, 3)
    assert fork.forked_from == waypoint.ForkedFrom(plan_id="source", step=2)


def test_refusals_raise_the_family_with_the_cli_code_and_exit_code(store: waypoint.Store) -> None:
    service = store.service()
    with pytest.raises(waypoint.PlanNotFound) as missing:
        service.build_resume_summary("nowhere")
    assert (missing.value.code, missing.value.exit_code, str(missing.value)) == ("plan_not_found", 3, "plan nowhere not found")

    with store.workflow("finished") as run:
        run.step("only", lambda: 1)
    with pytest.raises(waypoint.NotEligible) as refused:
        service.resume_plan("finished")
    assert (refused.value.code, refused.value.exit_code) == ("not_eligible", 4)
    assert refused.value.reasons == [Reason.NOTHING_TO_RESUME]

    service.create_plan(plan_id="twice")
    with pytest.raises(waypoint.Conflict) as taken:
        service.create_plan(plan_id="twice")
    assert (taken.value.code, taken.value.exit_code) == ("plan_exists", 5)

    service.start_phase("twice", "strategize")
    service.record_step_checkpoint("twice", 1, "d-1", output="first")
    with pytest.raises(waypoint.Conflict) as different:
        service.record_step_checkpoint("twice", 1, "d-1", output="second")
    assert different.value.code == "conflicting_checkpoint"

    with pytest.raises(waypoint.InvalidState) as out_of_order:
        service.record_step_checkpoint("twice", 5, "d-5")
    assert (out_of_order.value.code, out_of_order.value.exit_code) == ("step_out_of_order", 7)

    with pytest.raises(waypoint.InvalidValue) as bad_phase:
        service.start_phase("twice", "later")
    assert (bad_phase.value.code, bad_phase.value.exit_code) == ("invalid_value", 2)
    with pytest.raises(waypoint.InvalidValue):
        service.record_step_started("twice", 0, "d-0")
    with pytest.raises(TypeError, match="the output is a set"):
        service.record_step_checkpoint("twice", 2, "d-2", output={1, 2})  # type: ignore[arg-type]

    for family in (waypoint.PlanNotFound, waypoint.NotEligible, waypoint.Conflict, waypoint.InvalidState):
        assert issubclass(family, waypoint.WaypointError)
    assert issubclass(waypoint.StillRunning, waypoint.Conflict)
    assert (waypoint.StillRunning.code, waypoint.StillRunning.exit_code) == ("run_lock_busy", 5)
    assert (waypoint.Waiting.code, waypoint.Waiting.exit_code) == ("waiting", 0)


def test_a_shutdown_is_refused_while_a_workflow_runs_the_plan(store: waypoint.Store) -> None:
    with store.workflow("busy") as run:
        run.step("one", lambda: 1)
        with pytest.raises(waypoint.StillRunning) as busy:
            store.service().record_shutdown("busy")
        assert busy.value.reasons == [Reason.STILL_RUNNING]
        summary = store.service().build_resume_summary("busy")
        assert (summary.status, summary.reasons) == ("running", (Reason.STILL_RUNNING,))
