//! The engine's spans as a Rust workflow (closures) makes them: given a tracer provider the
//! program installed, when a workflow runs, fails, retries and resumes steps, then its spans
//! have the shape every surface shares (the CLI's are checked end to end in `cli_traces`).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::executor::block_on;
use opentelemetry::trace::Status;
use opentelemetry::Value;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter};
use waypoint_domain::PlanId;

use crate::{InMemoryStore, PlanResumeService, StepOptions, WorkflowError};

/// Keeps every exported span in memory.
#[derive(Debug, Clone, Default)]
struct Kept(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Kept {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

/// The provider installed once for this test binary, and what it exported.
fn installed() -> &'static (SdkTracerProvider, Kept) {
    static INSTALLED: OnceLock<(SdkTracerProvider, Kept)> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let kept = Kept::default();
        let processor = BatchSpanProcessor::builder(kept.clone()).build();
        let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        (provider, kept)
    })
}

/// The spans of plan `plan` exported so far (other tests' spans are left out), oldest first.
fn spans_of(plan: &str) -> Vec<SpanData> {
    let (provider, kept) = installed();
    provider.force_flush().unwrap();
    let spans = kept.0.lock().unwrap();
    spans.iter().filter(|s| attribute(s, "waypoint.plan.id") == Some(Value::from(plan.to_owned()))).cloned().collect()
}

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.clone())
}

fn int(span: &SpanData, key: &str) -> i64 {
    match attribute(span, key) {
        Some(Value::I64(n)) => n,
        other => panic!("{} has no integer {key}: {other:?}", span.name),
    }
}

fn text(span: &SpanData, key: &str) -> String {
    attribute(span, key).map(|v| v.to_string()).unwrap_or_else(|| panic!("{} has no {key}", span.name))
}

#[test]
fn a_workflow_run_is_a_run_span_with_one_child_span_per_attempt() {
    installed();
    let service = PlanResumeService::new(InMemoryStore::new());
    let key = PlanId::parse("traced-workflow").unwrap();
    block_on(async {
        let mut run = service.workflow(&key).await.unwrap();
        let fetched: u32 = run.step("fetch", |_| async { Ok::<_, String>(7) }).await.unwrap();
        let tries = Arc::new(Mutex::new(0));
        let options = StepOptions::named("flaky").retries(1).retry_delay(Duration::from_millis(1));
        let flaky: u32 = run
            .step_with(options, |_| {
                let tries = tries.clone();
                async move {
                    let mut tries = tries.lock().unwrap();
                    *tries += 1;
                    if *tries == 1 {
                        Err("not yet".to_owned())
                    } else {
                        Ok(fetched + 1)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(flaky, 8);
        run.finish().await.unwrap();
    });

    let spans = spans_of("traced-workflow");
    let runs: Vec<_> = spans.iter().filter(|s| s.name == "waypoint.run").collect();
    assert_eq!(runs.len(), 1, "{spans:#?}");
    let run = runs[0];
    assert_eq!(text(run, "waypoint.plan.name"), "traced-workflow");
    let steps: Vec<_> = spans.iter().filter(|s| s.name == "waypoint.step").collect();
    let shape: Vec<_> = steps
        .iter()
        .map(|s| {
            (
                int(s, "waypoint.step.number"),
                text(s, "waypoint.step.name"),
                int(s, "waypoint.step.attempt"),
                text(s, "waypoint.step.outcome"),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (1, "fetch".to_owned(), 1, "completed".to_owned()),
            (2, "flaky".to_owned(), 1, "failed".to_owned()),
            (2, "flaky".to_owned(), 2, "completed".to_owned()),
        ]
    );
    for step in &steps {
        assert_eq!(step.parent_span_id, run.span_context.span_id(), "an attempt is a child of its run");
        assert_eq!(step.span_context.trace_id(), run.span_context.trace_id());
    }
    assert!(
        matches!(&steps[1].status, Status::Error { description } if description.contains("not yet")),
        "{:?}",
        steps[1].status
    );
    assert_eq!(steps[2].status, Status::Unset);
}

#[test]
fn a_failed_workflow_is_an_error_and_its_next_run_says_where_it_resumed() {
    installed();
    let service = PlanResumeService::new(InMemoryStore::new());
    let key = PlanId::parse("traced-resume").unwrap();
    block_on(async {
        let mut run = service.workflow(&key).await.unwrap();
        run.step("one", |_| async { Ok::<_, String>(1) }).await.unwrap();
        let failed = run.step("two", |_| async { Err::<u32, _>("broken".to_owned()) }).await;
        assert!(matches!(failed, Err(WorkflowError::StepFailed { .. })), "{failed:?}");
    });
    block_on(async {
        let mut run = service.workflow(&key).await.unwrap();
        run.step("one", |_| async { Ok::<_, String>(1) }).await.unwrap();
        run.step("two", |_| async { Ok::<_, String>(2) }).await.unwrap();
        run.finish().await.unwrap();
    });

    let spans = spans_of("traced-resume");
    let runs: Vec<_> = spans.iter().filter(|s| s.name == "waypoint.run").collect();
    assert_eq!(runs.len(), 2, "{spans:#?}");
    assert!(matches!(&runs[0].status, Status::Error { description } if description.contains("step 2 (two)")));
    assert!(attribute(runs[0], "waypoint.resumed_from_step").is_none());
    assert_eq!(int(runs[1], "waypoint.resumed_from_step"), 2);
    let resumed_steps: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "waypoint.step" && s.parent_span_id == runs[1].span_context.span_id())
        .collect();
    assert_eq!(resumed_steps.len(), 1, "only the step that had not completed runs again");
    assert_eq!(int(resumed_steps[0], "waypoint.step.attempt"), 2);
}
