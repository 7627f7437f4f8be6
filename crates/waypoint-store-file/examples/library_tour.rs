//! A library user's tour on the embedded file store: record steps, interrupt, preview the
//! resume, resume, finish.
//!
//! Run with `cargo run -p waypoint-store-file --example library_tour [STORE_DIR]`; without a
//! directory it uses a fresh one under the system's temporary directory.

use std::path::PathBuf;

use waypoint_application::domain::{DecisionId, Message, Phase, StepNumber, TotalSteps};
use waypoint_application::{NewPlan, PlanResumeService, ResumeRequest, StepCheckpoint, StepStart};
use waypoint_store_file::FileStore;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("waypoint-library-tour-{}", std::process::id())));
    println!("store: {}", dir.display());
    futures::executor::block_on(tour(dir))
}

async fn tour(dir: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    // Every append is on disk before it returns; the run locks tell a crashed runner from a
    // live one.
    let store = FileStore::open(&dir)?;
    let service = PlanResumeService::new(store);
    let plan = service.create_plan(NewPlan { total_steps: Some(TotalSteps::new(4)?), ..NewPlan::default() }).await?;
    let id = plan.plan_id;
    service.start_phase(&id, Phase::Strategize, None).await?;
    for n in 1..=2 {
        let step = StepNumber::new(n)?;
        let decision_id = DecisionId::parse(&format!("decision-{n}"))?;
        service.record_step_started(&id, StepStart::new(step, decision_id.clone())).await?;
        service
            .record_step_checkpoint(
                &id,
                StepCheckpoint {
                    step,
                    decision_id,
                    snapshot_id: None,
                    artifacts: vec![],
                    name: None,
                    output: None,
                    fingerprint: None,
                },
            )
            .await?;
        println!("step {n} completed");
    }
    service.record_step_started(&id, StepStart::new(StepNumber::new(3)?, DecisionId::parse("decision-3")?)).await?;
    service.record_shutdown(&id, Message::parse("Ctrl-C")?).await?;
    println!("interrupted during step 3");

    let preview = service.resume_plan(&id, ResumeRequest { dry_run: true, ..ResumeRequest::default() }).await?;
    println!("preview: {}", serde_json::to_string_pretty(&preview.summary)?);

    let outcome = service.resume_plan(&id, ResumeRequest::default()).await?;
    let point = outcome.resumed.expect("a real resume returns its resume point");
    println!("resumed from step {} (re-running an uncertain step: {})", point.from_step, point.rerun_uncertain);
    for n in point.from_step.get()..=4 {
        let step = StepNumber::new(n)?;
        let decision_id = DecisionId::parse(&format!("decision-{n}"))?;
        service
            .record_step_checkpoint(
                &id,
                StepCheckpoint {
                    step,
                    decision_id,
                    snapshot_id: None,
                    artifacts: vec![],
                    name: None,
                    output: None,
                    fingerprint: None,
                },
            )
            .await?;
        println!("step {n} completed");
    }
    let summary = service.build_resume_summary(&id, None).await?;
    println!("progress {}%, eligible to resume again: {}", summary.progress_percent.unwrap_or(0), summary.eligible);
    Ok(())
}
