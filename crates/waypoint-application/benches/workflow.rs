//! What `Workflow::step` costs over recording the same step by hand: a workflow of 20 steps,
//! each returning a small JSON output, against 20 `record_step_started` + `record_step_checkpoint`
//! pairs carrying the same output, both on the in-memory store so the store's own cost is the
//! same and small. Prints a paired ratio from alternating samples, which machine noise hits on
//! both sides alike.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use futures::executor::block_on;
use waypoint_application::domain::{DecisionId, Phase, PlanId, StepName, StepNumber, StepOutput};
use waypoint_application::{InMemoryStore, NewPlan, PlanResumeService, StepCheckpoint, StepStart};

const STEPS: u32 = 20;

fn output(n: u32) -> serde_json::Value {
    serde_json::json!({ "step": n, "label": "billing", "score": 0.93 })
}

fn by_workflow() {
    let service = PlanResumeService::new(InMemoryStore::new());
    block_on(async {
        let mut run = service.workflow(&PlanId::parse("bench").unwrap()).await.unwrap();
        for n in 1..=STEPS {
            let value: serde_json::Value =
                run.step(&format!("step {n}"), |_| async move { Ok::<_, String>(output(n)) }).await.unwrap();
            black_box(value);
        }
        run.finish().await.unwrap();
    });
}

fn by_hand() {
    let service = PlanResumeService::new(InMemoryStore::new());
    block_on(async {
        let id = PlanId::parse("bench").unwrap();
        let new = NewPlan { id: Some(id.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
        service.create_plan(new).await.unwrap();
        for n in 1..=STEPS {
            let (step, decision) = (StepNumber::new(n).unwrap(), DecisionId::parse(&format!("step-{n}")).unwrap());
            let name = StepName::parse(&format!("step {n}")).unwrap();
            let start = StepStart { name: Some(name.clone()), ..StepStart::new(step, decision.clone()) };
            service.record_step_started(&id, start).await.unwrap();
            let value = output(n);
            let checkpoint = StepCheckpoint {
                name: Some(name),
                output: Some(StepOutput::new(value.clone()).unwrap()),
                ..StepCheckpoint::new(step, decision)
            };
            service.record_step_checkpoint(&id, checkpoint).await.unwrap();
            black_box(value);
        }
        service.complete_phase(&id).await.unwrap();
    });
}

fn time(f: fn()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

fn paired_ratio() {
    let (mut workflow, mut hand) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        workflow.push(time(by_workflow));
        hand.push(time(by_hand));
    }
    workflow.sort();
    hand.sort();
    let (w, h) = (workflow[workflow.len() / 2], hand[hand.len() / 2]);
    println!(
        "paired: {STEPS}-step workflow {w:?} vs the same steps recorded by hand {h:?}: ratio {:.2}",
        w.as_secs_f64() / h.as_secs_f64()
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("workflow step overhead");
    group.bench_function("workflow: 20 steps with outputs", |b| b.iter(by_workflow));
    group.bench_function("by hand: the same 20 steps", |b| b.iter(by_hand));
    group.finish();
    criterion.final_summary();
    paired_ratio();
}
