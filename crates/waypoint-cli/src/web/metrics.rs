//! `/metrics`: Prometheus text (OpenMetrics) through `prometheus-client`. Plans by status are
//! counted from the catalog at each scrape; steps completed and failed, attempts and step
//! durations are counted as the poller sees them happen, since this server started.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use waypoint_domain::PlanStatus;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

type Durations = Family<OutcomeLabel, Histogram, fn() -> Histogram>;

/// Every metric the dashboard exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    plans: Family<StatusLabel, Gauge>,
    completed: Counter,
    failed: Counter,
    attempts: Counter,
    durations: Durations,
}

fn durations() -> Histogram {
    // 0.1 s to about 14 minutes.
    Histogram::new(exponential_buckets(0.1, 2.0, 14))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let plans = Family::<StatusLabel, Gauge>::default();
        let completed = Counter::default();
        let failed = Counter::default();
        let attempts = Counter::default();
        let durations: Durations = Family::new_with_constructor(durations);
        registry.register("waypoint_plans", "Plans in the store, by status", plans.clone());
        registry.register("waypoint_steps_completed", "Steps completed since this server started", completed.clone());
        registry.register(
            "waypoint_steps_failed",
            "Step attempts that failed (retried or not) since this server started",
            failed.clone(),
        );
        registry.register(
            "waypoint_step_attempts",
            "Step attempts started since this server started",
            attempts.clone(),
        );
        registry.register(
            "waypoint_step_duration_seconds",
            "How long step attempts ran, by outcome (completed or failed)",
            durations.clone(),
        );
        Self { registry: Mutex::new(registry), plans, completed, failed, attempts, durations }
    }

    pub fn attempt_started(&self) {
        self.attempts.inc();
    }

    pub fn step_completed(&self, seconds: Option<f64>) {
        self.completed.inc();
        if let Some(seconds) = seconds {
            self.durations.get_or_create(&OutcomeLabel { outcome: "completed" }).observe(seconds);
        }
    }

    pub fn step_failed(&self, seconds: Option<f64>) {
        self.failed.inc();
        if let Some(seconds) = seconds {
            self.durations.get_or_create(&OutcomeLabel { outcome: "failed" }).observe(seconds);
        }
    }

    /// The exposition, with plans by status as counted now (every status, zeros included).
    pub fn render(&self, statuses: impl IntoIterator<Item = PlanStatus>) -> String {
        let mut counts: Vec<(PlanStatus, i64)> = PlanStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for status in statuses {
            if let Some(entry) = counts.iter_mut().find(|(s, _)| *s == status) {
                entry.1 += 1;
            }
        }
        for (status, count) in counts {
            self.plans.get_or_create(&StatusLabel { status: status.as_str() }).set(count);
        }
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }
}
