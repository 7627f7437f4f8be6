//! What the engine tells operators about a run: one `waypoint.run` span per run and one
//! `waypoint.step` span per attempt, with `tracing` events beside them for the operator log.
//! Made here, driven by [`super::EngineRun`]'s own calls, so that every surface that runs steps
//! (the plan-file runner, the workflow API, Python, workers) traces alike without a line of its
//! own (ADR 0016).
//!
//! Spans go to OpenTelemetry's global tracer provider. Until a program installs one (the CLI and
//! the Python module do when `OTEL_*` asks them to) it is a no-op, and a span costs next to
//! nothing.

use std::fmt;

use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use waypoint_domain::{PlanId, PlanName};

use super::{AttemptTicket, StepFailure};
use crate::service::ResumePoint;

/// The instrumentation scope of Waypoint's spans.
const SCOPE: &str = "waypoint";

/// How an attempt ended, as its span's `waypoint.step.outcome` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Completed,
    Failed,
    Timeout,
    Interrupted,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Timeout => "timeout",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// A failed attempt's outcome: a timeout is told apart from every other failure.
    pub(super) fn of(failure: &StepFailure) -> Self {
        match failure {
            StepFailure::Timeout { .. } => Outcome::Timeout,
            _ => Outcome::Failed,
        }
    }
}

/// The spans of one run: the run's, and the open attempt's. Dropped with the run, it ends
/// whatever is still open (an attempt then counts as interrupted).
pub(super) struct RunTrace {
    tracer: BoxedTracer,
    plan_id: PlanId,
    /// The plan's attributes, which every span of the run carries.
    plan: [KeyValue; 2],
    /// The run's span, as the context its attempts' spans are made in.
    run: Context,
    /// The attempt running now, if any.
    step: Option<Context>,
}

impl fmt::Debug for RunTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunTrace").field("run", &self.run.span().span_context()).finish_non_exhaustive()
    }
}

impl RunTrace {
    /// Opens the run's span, under the thread's current context (the trace a process was
    /// started in, when its program made that current).
    pub(super) fn start(plan_id: &PlanId, name: Option<&PlanName>, resumed: Option<ResumePoint>) -> Self {
        let tracer = global::tracer(SCOPE);
        let plan = [
            KeyValue::new("waypoint.plan.id", plan_id.as_str().to_owned()),
            KeyValue::new("waypoint.plan.name", name.map_or_else(|| plan_id.as_str().to_owned(), |n| n.to_string())),
        ];
        let mut attributes = plan.to_vec();
        if let Some(resumed) = resumed {
            attributes.push(KeyValue::new("waypoint.resumed_from_step", i64::from(resumed.from_step.get())));
        }
        let span = tracer
            .span_builder("waypoint.run")
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .start_with_context(&tracer, &Context::current());
        let run = Context::current().with_span(span);
        let resumed_from_step = resumed.map(|r| r.from_step.get());
        tracing::info!(target: "waypoint", plan_id = plan_id.as_str(), resumed_from_step, "run started");
        RunTrace { tracer, plan_id: plan_id.clone(), plan, run, step: None }
    }

    /// Opens the span of the attempt `ticket`, under the run's.
    pub(super) fn step_started(&mut self, ticket: &AttemptTicket) {
        self.end_step(Outcome::Interrupted, None);
        let mut attributes = self.plan.to_vec();
        attributes.extend([
            KeyValue::new("waypoint.step.number", i64::from(ticket.step.get())),
            KeyValue::new("waypoint.step.name", ticket.name.to_string()),
            KeyValue::new("waypoint.step.attempt", i64::from(ticket.attempt.get())),
        ]);
        let span = self
            .tracer
            .span_builder("waypoint.step")
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &self.run);
        self.step = Some(self.run.with_span(span));
        tracing::debug!(
            target: "waypoint",
            plan_id = self.plan_id.as_str(),
            step = ticket.step.get(),
            name = ticket.name.as_str(),
            attempt = ticket.attempt.get(),
            "step started"
        );
    }

    /// Ends the open attempt's span with `outcome`; a failure's `message` becomes its error
    /// status.
    pub(super) fn end_step(&mut self, outcome: Outcome, message: Option<&str>) {
        let Some(step) = self.step.take() else { return };
        let span = step.span();
        span.set_attribute(KeyValue::new("waypoint.step.outcome", outcome.as_str()));
        if let Some(message) = message {
            span.set_status(Status::error(message.to_owned()));
        }
        span.end();
        let (plan_id, outcome) = (self.plan_id.as_str(), outcome.as_str());
        match message {
            Some(message) => tracing::warn!(target: "waypoint", plan_id, outcome, "{message}"),
            None => tracing::debug!(target: "waypoint", plan_id, outcome, "step ended"),
        }
    }

    /// Marks the run as failed with `message` (its span ends with the run).
    pub(super) fn run_failed(&mut self, message: &str) {
        self.run.span().set_status(Status::error(message.to_owned()));
        tracing::warn!(target: "waypoint", plan_id = self.plan_id.as_str(), "run failed: {message}");
    }

    /// Notes why the run stopped early; the open attempt, if any, was interrupted.
    pub(super) fn interrupted(&mut self, reason: &str) {
        self.end_step(Outcome::Interrupted, None);
        self.run.span().add_event("interrupted", vec![KeyValue::new("waypoint.reason", reason.to_owned())]);
        tracing::info!(target: "waypoint", plan_id = self.plan_id.as_str(), "run interrupted: {reason}");
    }

    /// The W3C trace context of the open attempt's span, as environment variables for the
    /// step's process (`TRACEPARENT`, and `TRACESTATE` when there is one). Empty when tracing
    /// is off or no attempt is open.
    pub(super) fn step_environment(&self) -> Vec<(&'static str, String)> {
        let Some(step) = &self.step else { return Vec::new() };
        let span = step.span();
        let context = span.span_context();
        if !context.is_valid() {
            return Vec::new();
        }
        let mut vars = vec![(
            "TRACEPARENT",
            format!("00-{}-{}-{:02x}", context.trace_id(), context.span_id(), context.trace_flags().to_u8()),
        )];
        let state = context.trace_state().header();
        if !state.is_empty() {
            vars.push(("TRACESTATE", state));
        }
        vars
    }
}

impl Drop for RunTrace {
    fn drop(&mut self) {
        self.end_step(Outcome::Interrupted, None);
        self.run.span().end();
        tracing::debug!(target: "waypoint", plan_id = self.plan_id.as_str(), "run ended");
    }
}

#[cfg(test)]
mod tests;
