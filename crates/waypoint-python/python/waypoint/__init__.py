"""Waypoint for Python: durable, resumable multi-step workflows on Waypoint's stores.

.. code-block:: python

    import waypoint

    store = waypoint.open(".waypoint")
    with store.workflow("inbox-agent") as run:
        mail = run.step("fetch", fetch_mail)
        label = run.step("classify", classify, mail, retries=2)

The same engine, stores and events as the ``waypoint`` CLI: a plan recorded here shows up in
``waypoint plan list``, and the other way round.
"""

from ._native import (
    Conflict,
    InvalidState,
    InvalidValue,
    NotEligible,
    OutputTooLarge,
    PlanNotFound,
    StepMismatch,
    StillRunning,
    StoreCorrupt,
    StoreUnavailable,
    Waiting,
    WaypointError,
)
from ._records import (
    JSON,
    ChangedStep,
    Event,
    ForkedFrom,
    Interruption,
    InterruptionSummary,
    Lease,
    ResumeCheckpoint,
    ResumeEligibility,
    ResumeIneligibleReason,
    ResumeMetadata,
    ResumeSummary,
    StepDigest,
)
from ._service import PlanResumeService
from ._store import Store, open
from ._workflow import AsyncRun, Run, Workflow, step

__all__ = [
    "JSON",
    "AsyncRun",
    "ChangedStep",
    "Conflict",
    "Event",
    "ForkedFrom",
    "Interruption",
    "InterruptionSummary",
    "InvalidState",
    "InvalidValue",
    "Lease",
    "NotEligible",
    "OutputTooLarge",
    "PlanNotFound",
    "PlanResumeService",
    "ResumeCheckpoint",
    "ResumeEligibility",
    "ResumeIneligibleReason",
    "ResumeMetadata",
    "ResumeSummary",
    "Run",
    "StepDigest",
    "StepMismatch",
    "StillRunning",
    "Store",
    "StoreCorrupt",
    "StoreUnavailable",
    "Waiting",
    "WaypointError",
    "Workflow",
    "open",
    "step",
]
