"""What the lifecycle service answers: frozen dataclasses with the CLI's JSON field names.

Each is built from the serde JSON of the Rust type (the same JSON `waypoint ... --format json`
prints), and ``to_dict()`` gives that JSON back. Times are the RFC 3339 strings the store
records (nanoseconds kept), not ``datetime`` objects, so nothing is lost on the way.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

#: A JSON value, as step outputs and event data are recorded.
JSON = Union[None, bool, int, float, str, List["JSON"], Dict[str, "JSON"]]


class ResumeIneligibleReason(str, enum.Enum):
    """Why a plan cannot resume: the stable codes scripts match on."""

    TERMINAL_STATE = "terminal_state"
    """The plan was applied or cancelled."""
    ACTION_PHASE = "action_phase"
    """Nothing has run yet: start a phase instead."""
    STILL_RUNNING = "still_running"
    """A runner is working on the plan now (a run lock or a live lease)."""
    NOTHING_TO_RESUME = "nothing_to_resume"
    """Every step has completed."""
    DEFINITION_CHANGED = "definition_changed"
    """A completed step's definition changed, or cannot be read."""
    SNAPSHOT_MISSING = "snapshot_missing"
    """The last checkpoint's snapshot or artifacts are gone or changed."""
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    """A step waits for a person's decision: approve (or reject) it first."""
    APPROVAL_REJECTED = "approval_rejected"
    """The step it waited at was rejected: fork the plan or start a new one."""

    def __str__(self) -> str:
        return self.value


def _plain(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


class _Record:
    """The JSON form of every record: its fields in order, nested records and enums plain."""

    def to_dict(self) -> Dict[str, Any]:
        """The record as the CLI's JSON object."""
        assert dataclasses.is_dataclass(self)
        return {field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)}


def _reasons(values: Any) -> Tuple[ResumeIneligibleReason, ...]:
    return tuple(ResumeIneligibleReason(code) for code in values)


@dataclasses.dataclass(frozen=True)
class InterruptionSummary(_Record):
    """Why and when a plan stopped; ``inferred`` when no interruption was recorded (a crash)."""

    reason: str
    at: Optional[str]
    inferred: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InterruptionSummary:
        return cls(reason=data["reason"], at=data.get("at"), inferred=data["inferred"])


@dataclasses.dataclass(frozen=True)
class ForkedFrom(_Record):
    """The plan and last step a fork copied."""

    plan_id: str
    step: Optional[int]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ForkedFrom:
        return cls(plan_id=data["plan_id"], step=data.get("step"))


@dataclasses.dataclass(frozen=True)
class ChangedStep(_Record):
    """A step whose definition differs from the recorded one."""

    step: int
    name: Optional[str]
    completed: bool
    change: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChangedStep:
        return cls(step=data["step"], name=data.get("name"), completed=data["completed"], change=data["change"])


@dataclasses.dataclass(frozen=True)
class Lease(_Record):
    """A runner's hold on a plan, until ``expires_at`` on the store's clock."""

    runner: str
    expires_at: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Lease:
        return cls(runner=data["runner"], expires_at=data["expires_at"])


@dataclasses.dataclass(frozen=True)
class WaitingFor(_Record):
    """The step a ``waiting`` plan waits at, and what the person is asked."""

    step: int
    name: Optional[str]
    question: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WaitingFor:
        return cls(step=data["step"], name=data.get("name"), question=data["question"])


@dataclasses.dataclass(frozen=True)
class ResumeSummary(_Record):
    """Where a plan stands and whether, and from where, it can resume: what
    ``waypoint plan show ID --format json`` prints."""

    plan_id: str
    phase: str
    state: str
    eligible: bool
    reasons: Tuple[ResumeIneligibleReason, ...]
    interrupted: bool
    interruption: Optional[InterruptionSummary]
    last_completed_step: Optional[int]
    total_steps: Optional[int]
    next_step: Optional[int]
    remaining_steps: Optional[int]
    progress_percent: Optional[int]
    last_checkpoint_id: Optional[str]
    decision_id: Optional[str]
    snapshot_id: Optional[str]
    uncertain_step: Optional[int]
    resume_count: int
    status: str
    forked_from: Optional[ForkedFrom]
    changed_steps: Tuple[ChangedStep, ...]
    error: Optional[str]
    lease: Optional[Lease]
    waiting_for: Optional[WaitingFor]
    queue: Optional[str] = None
    """The queue the plan was submitted to for workers (``waypoint submit``), if any."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResumeSummary:
        interruption = data.get("interruption")
        forked_from = data.get("forked_from")
        lease = data.get("lease")
        waiting_for = data.get("waiting_for")
        return cls(
            plan_id=data["plan_id"],
            phase=data["phase"],
            state=data["state"],
            eligible=data["eligible"],
            reasons=_reasons(data["reasons"]),
            interrupted=data["interrupted"],
            interruption=InterruptionSummary.from_json(interruption) if interruption is not None else None,
            last_completed_step=data.get("last_completed_step"),
            total_steps=data.get("total_steps"),
            next_step=data.get("next_step"),
            remaining_steps=data.get("remaining_steps"),
            progress_percent=data.get("progress_percent"),
            last_checkpoint_id=data.get("last_checkpoint_id"),
            decision_id=data.get("decision_id"),
            snapshot_id=data.get("snapshot_id"),
            uncertain_step=data.get("uncertain_step"),
            resume_count=data["resume_count"],
            status=data["status"],
            forked_from=ForkedFrom.from_json(forked_from) if forked_from is not None else None,
            changed_steps=tuple(ChangedStep.from_json(c) for c in data["changed_steps"]),
            error=data.get("error"),
            lease=Lease.from_json(lease) if lease is not None else None,
            waiting_for=WaitingFor.from_json(waiting_for) if waiting_for is not None else None,
            queue=data.get("queue"),
        )


@dataclasses.dataclass(frozen=True)
class ResumeEligibility(_Record):
    """The verdict of the one eligibility function: eligible, or every reason it is not."""

    eligible: bool
    reasons: Tuple[ResumeIneligibleReason, ...]
    crash_inferred: bool
    lease_expired: bool
    changed_steps: Tuple[ChangedStep, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResumeEligibility:
        return cls(
            eligible=data["eligible"],
            reasons=_reasons(data["reasons"]),
            crash_inferred=data["crash_inferred"],
            lease_expired=data["lease_expired"],
            changed_steps=tuple(ChangedStep.from_json(c) for c in data["changed_steps"]),
        )


@dataclasses.dataclass(frozen=True)
class ResumeCheckpoint(_Record):
    """The durable record that a step completed, with its output."""

    checkpoint_id: str
    step: int
    decision_id: str
    snapshot_id: Optional[str]
    artifacts: Tuple[str, ...]
    name: Optional[str]
    output: JSON
    fingerprint: Optional[str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResumeCheckpoint:
        return cls(
            checkpoint_id=data["checkpoint_id"],
            step=data["step"],
            decision_id=data["decision_id"],
            snapshot_id=data.get("snapshot_id"),
            artifacts=tuple(data["artifacts"]),
            name=data.get("name"),
            output=data.get("output"),
            fingerprint=data.get("fingerprint"),
        )


@dataclasses.dataclass(frozen=True)
class StepDigest(_Record):
    """The name and definition fingerprint a completed step recorded."""

    name: Optional[str]
    fingerprint: Optional[str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepDigest:
        return cls(name=data.get("name"), fingerprint=data.get("fingerprint"))


@dataclasses.dataclass(frozen=True)
class Interruption(_Record):
    """The last recorded interruption: why and when."""

    reason: str
    at: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Interruption:
        return cls(reason=data["reason"], at=data["at"])


@dataclasses.dataclass(frozen=True)
class ResumeMetadata(_Record):
    """What a resume needs to know about the current phase, folded from the plan's events."""

    last_completed_step: Optional[int]
    last_checkpoint_id: Optional[str]
    checkpoints: Tuple[ResumeCheckpoint, ...]
    completed_steps: Tuple[StepDigest, ...]
    total_steps: Optional[int]
    interrupted: bool
    interruption: Optional[Interruption]
    resume_count: int
    uncertain_step: Optional[int]
    uncertain_name: Optional[str]
    uncertain_attempt: Optional[int]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResumeMetadata:
        interruption = data.get("interruption")
        return cls(
            last_completed_step=data.get("last_completed_step"),
            last_checkpoint_id=data.get("last_checkpoint_id"),
            checkpoints=tuple(ResumeCheckpoint.from_json(c) for c in data["checkpoints"]),
            completed_steps=tuple(StepDigest.from_json(d) for d in data["completed_steps"]),
            total_steps=data.get("total_steps"),
            interrupted=data["interrupted"],
            interruption=Interruption.from_json(interruption) if interruption is not None else None,
            resume_count=data["resume_count"],
            uncertain_step=data.get("uncertain_step"),
            uncertain_name=data.get("uncertain_name"),
            uncertain_attempt=data.get("uncertain_attempt"),
        )


@dataclasses.dataclass(frozen=True)
class Event(_Record):
    """One recorded event, as ``waypoint plan history ID --format json`` lists it."""

    version: int
    position: int
    type: str
    schema_version: int
    at: str
    data: Dict[str, JSON]
    event_id: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        return cls(
            version=data["version"],
            position=data["position"],
            type=data["type"],
            schema_version=data["schema_version"],
            at=data["at"],
            data=data["data"],
            event_id=data["event_id"],
        )
