//! The lease commands, for an orchestrator that holds a plan by lease rather than by a run lock:
//! `plan start` and `plan resume` with `--runner NAME --lease DURATION`, and `plan heartbeat`.

use std::time::Duration;

use waypoint_application::LeaseRequest;
use waypoint_domain::{Lease, RunnerId};

use super::*;
use crate::runner::format_duration;

/// `plan start ID --phase P --runner NAME --lease DURATION`.
pub(super) fn start(
    location: &StoreLocation,
    ui: &Ui,
    id: &PlanId,
    phase: Phase,
    lease: LeaseRequest,
) -> Result<(), CliError> {
    let service = location.open_existing_for_write(id)?;
    let view = block_on(service.start_phase_leased(id, phase, lease))?;
    print_after_write(&service, ui, id, &format!("{}{}", entered(ui, phase), held(view.state.lease.as_ref())))
}

/// `plan heartbeat ID --runner NAME [--lease DURATION]`: exit 5 (`lease_lost`) when `runner`
/// does not hold the plan's lease.
pub(super) fn heartbeat(
    location: &StoreLocation,
    ui: &Ui,
    id: &PlanId,
    runner: RunnerId,
    lease: Duration,
) -> Result<(), CliError> {
    let service = location.open_existing_for_write(id)?;
    let view = block_on(service.heartbeat(id, runner, lease))?;
    let done = format!("lease renewed for {}{}", format_duration(lease), held(view.state.lease.as_ref()));
    print_after_write(&service, ui, id, &done)
}

/// `plan resume ID --runner NAME --lease DURATION`: the resume of a plan an orchestrator records
/// itself, taken over by lease once an earlier runner's lease ran out. A plan file's plan runs
/// in the foreground under its run lock instead, so a lease is refused for it.
pub(super) fn resume(
    location: &StoreLocation,
    ui: &Ui,
    id: &PlanId,
    fingerprint: Option<Fingerprint>,
    lease: LeaseRequest,
) -> Result<(), CliError> {
    let service = location.open_existing_for_write(id)?;
    let view = block_on(service.load_summary(id))?;
    if plan_file_path(&view.state).is_some() {
        return Err(CliError::usage(
            "lease_not_supported",
            format!(
                "plan {id} runs from a plan file, which `waypoint plan resume {id}` runs in the foreground under its run lock; leave out --runner and --lease"
            ),
        )
        .with("plan_id", id.as_str()));
    }
    let request = ResumeRequest { fingerprint, lease: Some(lease), ..ResumeRequest::default() };
    let outcome = block_on(service.resume_plan(id, request))?;
    print_resumed(ui, &outcome, &view, &held(outcome.summary.lease.as_ref()));
    Ok(())
}

/// ` · held by R until T` for a plan held by lease.
fn held(lease: Option<&Lease>) -> String {
    lease.map_or(String::new(), |l| format!(" · held by {} until {}", l.runner, local_time(l.expires_at)))
}
