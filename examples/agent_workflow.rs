//! A five-step agent as a durable workflow: each step's output is recorded, so a run that dies
//! mid-way continues on the next run without redoing (or re-paying for) the finished steps.
//!
//! `cargo run -p waypoint-store-file --example agent_workflow -- STORE_DIR`; set
//! `WAYPOINT_CRASH_AT=3` to make it die inside step 3, then run it again.

use waypoint_application::domain::PlanId;
use waypoint_application::PlanResumeService;
use waypoint_store_file::FileStore;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = FileStore::open(std::env::args().nth(1).unwrap_or_else(|| ".waypoint-agent".into()))?;
    let crash_at: u32 = std::env::var("WAYPOINT_CRASH_AT").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    let work = |n: u32, name: &str, result: String| {
        println!("step {n} {name}: running");
        if n == crash_at {
            std::process::exit(3); // dies as a crash would: no cleanup, nothing recorded
        }
        Ok::<_, String>(result)
    };
    let service = PlanResumeService::new(store);
    futures::executor::block_on(async {
        let mut run = service.workflow(&PlanId::parse("inbox-agent")?).await?;
        let mail: String = run.step("fetch", |_| async { work(1, "fetch", "Invoice 42 is overdue".into()) }).await?;
        let label: String = run.step("classify", |_| async { work(2, "classify", "billing".into()) }).await?;
        let gist: String =
            run.step("summarise", |_| async { work(3, "summarise", format!("{label}: {mail}")) }).await?;
        let draft: String = run.step("draft", |_| async { work(4, "draft", format!("Re: {gist}")) }).await?;
        let sent: bool = run.step("post", |_| async { work(5, "post", draft.clone()).map(|_| true) }).await?;
        println!("done: {draft} (sent: {sent})");
        run.finish().await?;
        Ok(())
    })
}
