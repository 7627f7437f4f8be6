//! `waypoint submit` and `waypoint queue set|list` (ADR 0017): a plan file recorded whole for the
//! workers, and the queues' limits. The worker itself is `crate::worker`.

use waypoint_application::{QueueOverview, Submit};
use waypoint_domain::{Artifact, SubmittedDefinition};

use super::*;
use crate::cli::{QueueCommand, SubmitArgs};

/// The format name of a submitted plan file's definition.
pub const PLAN_FILE_FORMAT: &str = "plan_file";

pub(super) fn submit(location: &StoreLocation, ui: &Ui, args: SubmitArgs) -> Result<(), CliError> {
    let shown = shown_path(&args.file);
    let unreadable = |detail: String| {
        CliError::usage("plan_file_unreadable", format!("cannot read plan file {shown}: {detail}"))
            .with("path", shown.clone())
    };
    let absolute = std::fs::canonicalize(&args.file).map_err(|e| unreadable(e.to_string()))?;
    let text = std::fs::read_to_string(&absolute).map_err(|e| unreadable(e.to_string()))?;
    // Checked as `run` checks it; its folders are the worker's business, not this machine's.
    let file = PlanFile::parse(&absolute, text.as_bytes())?;
    let file_name = absolute.file_name().map_or("plan.toml".into(), |n| n.to_string_lossy().into_owned());
    let submitted = SubmittedDefinition::new(PLAN_FILE_FORMAT, text, file_name)
        .map_err(|e| CliError::usage("plan_file_invalid", format!("plan file {shown}: {e}")))?;
    let mut definition = file.run_definition()?;
    // Not the file's path: a submitted plan's definition is the one stored with it, and no
    // machine reads the file again.
    definition.source = Artifact::parse(&format!("submitted:{}", absolute.display()))
        .map_err(|e| CliError::usage("plan_file_unreadable", format!("plan file {shown}: {e}")))?;
    let plan_id = args.key.unwrap_or_else(|| keyed_id(&absolute, 1));
    let service = location.open_for_write()?;
    let request = Submit { plan_id, definition, submitted, queue: args.queue.clone(), workdir: args.workdir };
    let (view, created) = block_on(service.submit(request))?;
    let summary = block_on(service.build_resume_summary(&view.plan_id, None))?;
    if ui.json() {
        ui.json_document(&render::CreatedDoc { summary: &summary, created });
    } else {
        let id = &view.plan_id;
        let queue = summary.queue.as_ref().map_or(args.queue.to_string(), |q| q.to_string());
        let line = if created {
            format!("{} plan {id} · queued in {queue} · {}", ui.out.green("✓"), count(file.steps.len(), "step"))
        } else {
            format!(
                "{} plan {id} was submitted before (status: {}); nothing new recorded",
                ui.out.dim("="),
                summary.status
            )
        };
        ui.stdout(&line);
    }
    Ok(())
}

pub(super) fn queue(location: &StoreLocation, ui: &Ui, command: QueueCommand) -> Result<(), CliError> {
    match command {
        QueueCommand::Set { name, limit, no_limit } => {
            let service = location.open_for_write()?;
            let limit = if no_limit { None } else { limit };
            block_on(service.set_queue_limit(&name, limit))?;
            if ui.json() {
                ui.json_document(&serde_json::json!({ "queue": name, "limit": limit }));
            } else {
                match limit {
                    Some(n) => ui.stdout(&format!("queue {name}: at most {} at once", count(n as usize, "plan"))),
                    None => ui.stdout(&format!("queue {name}: no limit")),
                }
            }
            Ok(())
        }
        QueueCommand::List => {
            let queues = list_queues(location.open_read_only()?.as_ref())?;
            if ui.json() {
                ui.json_document(&queues_doc(&queues));
            } else if queues.is_empty() {
                ui.stdout("No queues yet. Submit a plan with `waypoint submit PLAN.toml`.");
            } else {
                let mut text =
                    format!("{:<24} {:>7} {:>7} {:>7} {:>5}\n", "QUEUE", "LIMIT", "QUEUED", "RUNNING", "HELD");
                for q in &queues {
                    let limit = q.limit.map_or("-".to_owned(), |l| l.to_string());
                    text.push_str(&format!(
                        "{:<24} {:>7} {:>7} {:>7} {:>5}\n",
                        cut(q.queue.as_str(), 24),
                        limit,
                        q.claimable,
                        q.running,
                        q.settled
                    ));
                }
                ui.stdout(text.trim_end());
            }
            Ok(())
        }
    }
}

/// Every queue that has a limit or holds plans, as `queue list` shows them; none when there is
/// no store yet.
pub fn list_queues(service: Option<&Service>) -> Result<Vec<QueueOverview>, CliError> {
    match service {
        Some(service) => Ok(block_on(service.queues())?),
        None => Ok(Vec::new()),
    }
}

/// `queue list --format json`: `{"queues": [{"queue", "limit", "queued", "running", "held"}]}`,
/// which the dashboard's `GET /api/v1/queues` answers with too.
pub fn queues_doc(queues: &[QueueOverview]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = queues
        .iter()
        .map(|q| {
            serde_json::json!({
                "queue": q.queue,
                "limit": q.limit,
                "queued": q.claimable,
                "running": q.running,
                "held": q.settled,
            })
        })
        .collect();
    serde_json::json!({ "queues": rows })
}
