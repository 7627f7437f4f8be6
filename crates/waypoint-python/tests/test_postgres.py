"""A Python workflow on PostgreSQL (`$WAYPOINT_TEST_POSTGRES_URL`, which `cargo xtask test`
sets; without it these tests fail, they never skip): steps recorded, a crash continued, the
run lock held across processes, and the CLI reading the same plan from the same URL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import waypoint
from conftest import Cli, run_python


def test_a_workflow_on_postgres_records_its_steps_and_continues_after_a_crash(postgres_url: str, key: str) -> None:
    script = """
        import os, sys, waypoint
        with waypoint.open(sys.argv[1]).workflow(sys.argv[2], name="pg agent") as run:
            run.step("fetch", lambda: {"mail": 1})
            run.step("classify", lambda: os._exit(3) if os.environ.get("CRASH") else "billing")
            print("resumed_from", run.resumed_from, run.outputs, flush=True)
    """
    assert run_python(script, postgres_url, key, env={"CRASH": "1"}).returncode == 3
    store = waypoint.open(postgres_url)
    summary = store.service().build_resume_summary(key)
    assert (summary.status, summary.last_completed_step, summary.uncertain_step) == ("crashed", 1, 2)
    again = run_python(script, postgres_url, key)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "resumed_from 2 {'fetch': {'mail': 1}, 'classify': 'billing'}"
    assert store.service().build_resume_summary(key).status == "completed"


def test_the_run_lock_on_postgres_refuses_a_second_runner(postgres_url: str, key: str) -> None:
    store = waypoint.open(postgres_url)
    with store.workflow(key) as run:
        run.step("one", lambda: 1)
        second = run_python(
            """
            import sys, waypoint
            try:
                with waypoint.open(sys.argv[1]).workflow(sys.argv[2]):
                    pass
            except waypoint.StillRunning as error:
                sys.exit(error.exit_code)
            """,
            postgres_url,
            key,
        )
        assert second.returncode == 5, second.stderr
    assert store.service().build_resume_summary(key).status == "completed"


def test_an_async_workflow_on_postgres(postgres_url: str, key: str) -> None:
    async def main() -> int:
        async with waypoint.open(postgres_url).workflow(key) as run:
            first = await run.step("first", asyncio.sleep, 0, 20)
            return await run.step("second", lambda x: x + 1, first)

    assert asyncio.run(main()) == 21


def test_the_cli_reads_a_python_workflow_from_the_same_server(
    postgres_url: str, key: str, waypoint_bin: Path
) -> None:
    store = waypoint.open(postgres_url)
    with store.workflow(key) as run:
        run.step("fetch", lambda: "mail")
    cli = Cli(waypoint_bin, postgres_url)
    assert cli.json("plan", "show", key) == store.service().build_resume_summary(key).to_dict()
    assert cli.json("plan", "show", key, "--outputs") == {"plan_id": key, "outputs": {"fetch": "mail"}}


def test_an_unreachable_server_is_store_unavailable() -> None:
    with pytest.raises(waypoint.StoreUnavailable) as unreachable:
        waypoint.open("postgres://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    assert (unreachable.value.code, unreachable.value.exit_code) == ("store_unavailable", 6)
    assert "secret" not in str(unreachable.value)
