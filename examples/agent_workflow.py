"""A five-step agent as a durable workflow: each step's output is recorded, so a run that dies
mid-way continues on the next run without redoing (or re-paying for) the finished steps. The
twin of examples/agent_workflow.rs.

    pip install ./crates/waypoint-python
    WAYPOINT_CRASH_AT=3 python examples/agent_workflow.py STORE_DIR   # dies inside step 3
    python examples/agent_workflow.py STORE_DIR                        # continues at step 3

The store defaults to ./.waypoint-agent; `waypoint --store STORE_DIR plan show inbox-agent
--outputs` shows what each step recorded.
"""

from __future__ import annotations

import os
import sys
from typing import TypeVar

import waypoint

T = TypeVar("T")

CRASH_AT = int(os.environ.get("WAYPOINT_CRASH_AT") or 0)


def work(n: int, name: str, result: T) -> T:
    """What an agent's step does (call a model, a mail server, …), here a print."""
    print(f"step {n} {name}: running", flush=True)
    if n == CRASH_AT:
        os._exit(3)  # dies as a crash would: no cleanup, nothing recorded
    return result


@waypoint.step(retries=2, retry_delay=0.5)
def post(draft: str) -> bool:
    """A decorated step: a step of whichever workflow is running, retried twice on failure."""
    return work(5, "post", draft) == draft


def main() -> None:
    store = waypoint.open(sys.argv[1] if len(sys.argv) > 1 else ".waypoint-agent")
    with store.workflow("inbox-agent", name="inbox agent") as run:
        if run.resumed_from is not None:
            print(f"continuing at step {run.resumed_from} with {sorted(run.outputs)} recorded")
        mail = run.step("fetch", work, 1, "fetch", "Invoice 42 is overdue")
        label = run.step("classify", work, 2, "classify", "billing", timeout=30)
        gist = run.step("summarise", work, 3, "summarise", f"{label}: {mail}")
        draft = run.step("draft", work, 4, "draft", f"Re: {gist}")
        sent = post(draft)
        print(f"done: {draft} (sent: {sent})")


if __name__ == "__main__":
    main()
