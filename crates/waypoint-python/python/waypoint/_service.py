"""The plan lifecycle service, for orchestrators that drive their own steps: the Rust
``PlanResumeService`` with Python names and keyword arguments. Each method's answer is a frozen
dataclass built from the serde JSON of the Rust result, the JSON the CLI prints."""

from __future__ import annotations

import json
from typing import List, Optional

from . import _native
from ._records import JSON, Event, ResumeCheckpoint, ResumeEligibility, ResumeMetadata, ResumeSummary


class PlanResumeService:
    """``store.service()``: create plans, record phases, steps, checkpoints and interruptions,
    judge and perform resumes, list and read plans. Every call releases the GIL while it waits
    on the store."""

    def __init__(self, store: _native.Store) -> None:
        self._store = store

    def create_plan(
        self, plan_id: Optional[str] = None, name: Optional[str] = None, total_steps: Optional[int] = None
    ) -> ResumeSummary:
        """Creates a plan (a random id unless ``plan_id`` is given), not started yet."""
        return ResumeSummary.from_json(json.loads(self._store.create_plan(plan_id, name, total_steps)))

    def start_phase(self, plan_id: str, phase: str) -> ResumeMetadata:
        """Enters ``phase``: ``"strategize"``, ``"execute"`` or ``"apply"``."""
        return ResumeMetadata.from_json(json.loads(self._store.start_phase(plan_id, phase)))

    def set_total_steps(self, plan_id: str, n: int) -> ResumeMetadata:
        """Sets how many steps the current phase has."""
        return ResumeMetadata.from_json(json.loads(self._store.set_total_steps(plan_id, n)))

    def record_step_started(self, plan_id: str, step: int, decision_id: str) -> ResumeMetadata:
        """Records the intent to run ``step``: until its checkpoint it is the uncertain step."""
        return ResumeMetadata.from_json(json.loads(self._store.record_step_started(plan_id, step, decision_id)))

    def record_step_checkpoint(
        self,
        plan_id: str,
        step: int,
        decision_id: str,
        snapshot_id: Optional[str] = None,
        name: Optional[str] = None,
        output: JSON = None,
    ) -> ResumeCheckpoint:
        """Records that ``step`` completed, with its output (JSON, at most 1 MiB). The same
        checkpoint recorded again writes nothing; a different one is ``waypoint.Conflict``."""
        text = self._store.record_step_checkpoint(plan_id, step, decision_id, snapshot_id, name, output)
        return ResumeCheckpoint.from_json(json.loads(text))

    def record_shutdown(self, plan_id: str, reason: Optional[str] = None) -> bool:
        """Records a graceful shutdown; ``False`` when it was already recorded. A plan that a
        runner holds now is ``waypoint.StillRunning``."""
        return self._store.record_shutdown(plan_id, reason)

    def validate_eligibility(self, plan_id: str) -> ResumeEligibility:
        """Whether the plan can resume, with every reason it cannot."""
        return ResumeEligibility.from_json(json.loads(self._store.validate_eligibility(plan_id)))

    def build_resume_summary(self, plan_id: str) -> ResumeSummary:
        """The plan's summary, as ``waypoint plan show ID --format json`` prints it."""
        return ResumeSummary.from_json(json.loads(self._store.build_resume_summary(plan_id)))

    def resume_plan(self, plan_id: str, dry_run: bool = False) -> ResumeSummary:
        """Previews (``dry_run``) or records a resume, and answers the summary; an ineligible
        plan's real resume is ``waypoint.NotEligible`` with every reason."""
        return ResumeSummary.from_json(json.loads(self._store.resume_plan(plan_id, dry_run)))

    def fork_plan(self, plan_id: str, from_step: int, new_id: Optional[str] = None) -> ResumeSummary:
        """A new plan with the steps of ``plan_id`` before ``from_step``, resuming at it."""
        return ResumeSummary.from_json(json.loads(self._store.fork_plan(plan_id, from_step, new_id)))

    def list_resumable(self) -> List[ResumeSummary]:
        """Every plan that can resume now, newest activity first."""
        return [ResumeSummary.from_json(s) for s in json.loads(self._store.list_resumable())]

    def list_plans(self) -> List[ResumeSummary]:
        """Every plan, newest activity first."""
        return [ResumeSummary.from_json(s) for s in json.loads(self._store.list_plans())]

    def history(self, plan_id: str) -> List[Event]:
        """The plan's events in order, as ``waypoint plan history ID --format json`` lists them."""
        return [Event.from_json(e) for e in json.loads(self._store.history(plan_id))]
