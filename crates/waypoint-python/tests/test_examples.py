"""The documented examples run as documented: `examples/agent_workflow.py` dies in step 3 on
request and continues on the next run with the outputs of steps 1 and 2, and the README's
twenty-line agent does the same when pasted into a file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

from conftest import ROOT, Cli

EXAMPLE = ROOT / "examples" / "agent_workflow.py"
README = ROOT / "crates" / "waypoint-python" / "README.md"


def run(script: Path, cwd: Path, *args: str, env: Optional[Dict[str, str]] = None) -> "subprocess.CompletedProcess[str]":
    import os

    return subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def test_the_agent_example_dies_in_step_3_and_continues_with_the_first_two_outputs(tmp_path: Path, waypoint_bin: Path) -> None:
    store = tmp_path / "agent-store"
    crashed = run(EXAMPLE, tmp_path, str(store), env={"WAYPOINT_CRASH_AT": "3"})
    assert crashed.returncode == 3, crashed.stderr
    assert crashed.stdout.splitlines() == ["step 1 fetch: running", "step 2 classify: running", "step 3 summarise: running"]
    again = run(EXAMPLE, tmp_path, str(store))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "continuing at step 3 with ['classify', 'fetch'] recorded",
        "step 3 summarise: running",
        "step 4 draft: running",
        "step 5 post: running",
        "done: Re: billing: Invoice 42 is overdue (sent: True)",
    ]
    replayed = run(EXAMPLE, tmp_path, str(store))
    assert replayed.stdout.splitlines() == ["done: Re: billing: Invoice 42 is overdue (sent: True)"]
    cli = Cli(waypoint_bin, str(store))
    outputs = cli.json("plan", "show", "inbox-agent", "--outputs")["outputs"]
    assert sorted(outputs) == ["classify", "draft", "fetch", "post", "summarise"]
    assert "inbox agent" in cli.run("plan", "list").stdout


def test_the_readme_agent_pasted_into_a_file_continues_after_dying_in_step_3(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    agent = next(block for block in blocks if "store.workflow(" in block)
    assert len(agent.strip().splitlines()) <= 25, "the README promises a short example"
    script = tmp_path / "agent.py"
    script.write_text(agent)
    crashed = run(script, tmp_path, env={"DIE_IN_STEP_3": "1"})
    assert crashed.returncode == 3, crashed.stderr
    again = run(script, tmp_path, env={"DIE_IN_STEP_3": ""})
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "done: billing: Invoice 42 is overdue | continued from step 3"
