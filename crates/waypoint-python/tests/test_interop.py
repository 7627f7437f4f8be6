"""One store, two surfaces: a plan recorded from Python is read by the `waypoint` binary, a
plan recorded by the binary is read (and resumed) from Python, each dataclass's `to_dict()`
equals the CLI's JSON for the same plan, and both see the same run locks and error codes."""

from __future__ import annotations

import json
from pathlib import Path

import waypoint
from conftest import Cli, run_python


def test_a_python_workflow_reads_the_same_in_the_cli(store: waypoint.Store, cli: Cli) -> None:
    with store.workflow("py-agent", name="python agent") as run:
        run.step("fetch", lambda: {"subject": "Invoice 42"})
        run.step("classify", lambda: "billing")
        outputs = run.outputs
    service = store.service()
    assert cli.json("plan", "show", "py-agent") == service.build_resume_summary("py-agent").to_dict()
    assert cli.json("plan", "list") == {"plans": [s.to_dict() for s in service.list_plans()]}
    assert cli.json("plan", "history", "py-agent") == {"events": [e.to_dict() for e in service.history("py-agent")]}
    assert cli.json("plan", "show", "py-agent", "--outputs") == {"plan_id": "py-agent", "outputs": outputs}
    listed = cli.run("plan", "list").stdout
    assert "python agent" in listed and "completed" in listed


def test_a_plan_recorded_by_the_cli_reads_the_same_in_python_and_resumes_there(store: waypoint.Store, cli: Cli) -> None:
    cli.run("plan", "create", "--id", "cli-plan", "--name", "cli plan", "--total-steps", "3")
    cli.run("plan", "start", "cli-plan", "--phase", "strategize")
    cli.run("plan", "step-started", "cli-plan", "--step", "1", "--decision", "d-1")
    cli.run("plan", "checkpoint", "cli-plan", "--step", "1", "--decision", "d-1", "--name", "fetch", "--output", '{"rows": 3}')
    cli.run("plan", "interrupt", "cli-plan", "--reason", "deploy freeze")
    service = store.service()
    assert service.build_resume_summary("cli-plan").to_dict() == cli.json("plan", "show", "cli-plan")
    assert service.resume_plan("cli-plan", dry_run=True).to_dict() == cli.json("plan", "resume", "cli-plan", "--dry-run")
    assert [e.to_dict() for e in service.history("cli-plan")] == cli.json("plan", "history", "cli-plan")["events"]
    resumed = service.resume_plan("cli-plan")
    assert resumed.to_dict() == cli.json("plan", "show", "cli-plan")
    assert (resumed.status, resumed.resume_count, resumed.next_step) == ("running", 1, 2)
    events = cli.json("plan", "history", "cli-plan")["events"]
    assert events[-1]["type"] == "resumed" and events[-1]["data"]["by"].startswith("python:")


def test_a_plan_file_run_by_the_cli_reads_the_same_in_python(store: waypoint.Store, cli: Cli, tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(
        'name = "two steps"\n\n[[steps]]\nname = "hello"\nrun = "echo hello"\n\n'
        '[[steps]]\nname = "broken"\nrun = "echo oops >&2; exit 4"\n'
    )
    cli.run("run", str(plan), expect=1)
    [summary] = store.service().list_plans()
    assert summary.status == "failed" and summary.last_completed_step == 1
    assert summary.to_dict() == cli.json("plan", "show", summary.plan_id)


def test_a_crashed_python_workflow_previews_the_same_resume_in_both(store_dir: Path, cli: Cli) -> None:
    crashed = run_python(
        """
        import os, sys, waypoint
        with waypoint.open(sys.argv[1]).workflow("crashes") as run:
            run.step("one", lambda: 1)
            run.step("two", lambda: os._exit(9))
        """,
        str(store_dir),
    )
    assert crashed.returncode == 9, crashed.stderr
    service = waypoint.open(store_dir).service()
    preview = service.resume_plan("crashes", dry_run=True)
    assert preview.to_dict() == cli.json("plan", "resume", "crashes", "--dry-run")
    assert (preview.status, preview.eligible, preview.uncertain_step) == ("crashed", True, 2)
    assert preview.interruption is not None and preview.interruption.inferred


def test_a_python_workflow_holds_the_run_lock_the_cli_respects(store: waypoint.Store, cli: Cli) -> None:
    with store.workflow("held") as run:
        run.step("one", lambda: 1)
        refused = cli.json("plan", "interrupt", "held", expect=5)
        assert refused["error"]["code"] == waypoint.StillRunning.code == "run_lock_busy"
        assert refused["error"]["reasons"] == ["still_running"]
        assert cli.json("plan", "show", "held")["status"] == "running"
    cli.run("plan", "show", "held")


def test_error_codes_and_exit_codes_match_the_clis(store: waypoint.Store, cli: Cli) -> None:
    service = store.service()
    cli_error = cli.json("plan", "show", "nowhere", expect=3)["error"]
    try:
        service.build_resume_summary("nowhere")
        raise AssertionError("a missing plan raises")
    except waypoint.PlanNotFound as error:
        assert (error.code, error.exit_code) == (cli_error["code"], 3)
        assert cli_error["message"].startswith(str(error))
    with store.workflow("done") as run:
        run.step("one", lambda: 1)
    cli_error = cli.json("plan", "resume", "done", expect=4)["error"]
    try:
        service.resume_plan("done")
        raise AssertionError("a finished plan does not resume")
    except waypoint.NotEligible as error:
        assert (error.code, error.exit_code, [str(r) for r in error.reasons]) == (
            cli_error["code"],
            4,
            cli_error["reasons"],
        )
    assert json.loads(cli.run("plan", "show", "done", "--format", "json").stdout)["status"] == "completed"


def test_a_corrupt_store_is_store_corrupt_with_the_clis_code_and_message_less_its_advice(
    store_dir: Path, cli: Cli
) -> None:
    store = waypoint.open(store_dir)
    for key in ("a", "b"):
        with store.workflow(key) as run:
            run.step("one", lambda: "x" * 100)
    del store, run
    log = store_dir / "events.log"
    data = bytearray(log.read_bytes())
    data[200] ^= 0xFF
    log.write_bytes(bytes(data))
    cli_error = cli.json("plan", "list", expect=6)["error"]
    try:
        waypoint.open(store_dir)
        raise AssertionError("a corrupt store does not open")
    except waypoint.StoreCorrupt as error:
        assert (error.code, error.exit_code) == (cli_error["code"], 6) == ("store_unreadable", 6)
        assert cli_error["message"].startswith(f"{error}; "), "the CLI's message is Python's, plus its advice"
