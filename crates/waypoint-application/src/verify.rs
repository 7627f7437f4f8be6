//! Store verification and statistics, the same for every store: rebuild the projections from the
//! log, compare them with what the store serves, and name every difference.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use eventually::store::Select;
use eventually::versioning::Versioned;
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;
use waypoint_domain::PlanId;

use crate::store::{Catalog, CatalogCursor, CatalogQuery, PlanStore, PlanView, StoreError, StoredEvent};

/// What a verification checked and every difference it found. `ok` is true exactly when there is
/// no difference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// No difference was found.
    pub ok: bool,
    /// How many things of each kind were compared, by name (`events`, `catalog_plans`, …).
    pub checked: BTreeMap<String, u64>,
    /// One line per difference, naming where and what.
    pub differences: Vec<String>,
}

impl VerifyReport {
    /// Counts one more checked thing of `kind`.
    pub fn count(&mut self, kind: &str, n: u64) {
        *self.checked.entry(kind.to_owned()).or_default() += n;
    }

    /// Adds a difference.
    pub fn differ(&mut self, difference: String) {
        self.differences.push(difference);
    }

    /// Sets `ok` from the differences found.
    pub fn finish(mut self) -> Self {
        self.ok = self.differences.is_empty();
        self
    }

    /// Adds what `other` checked and found.
    pub fn merge(&mut self, other: VerifyReport) {
        for (kind, n) in other.checked {
            self.count(&kind, n);
        }
        self.differences.extend(other.differences);
    }
}

/// For people: what was checked, then OK or every difference, one per line.
impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let checked: Vec<String> =
            self.checked.iter().map(|(kind, n)| format!("{n} {}", kind.replace('_', " "))).collect();
        writeln!(f, "Verify: checked {}", if checked.is_empty() { "nothing".to_owned() } else { checked.join(", ") })?;
        if self.differences.is_empty() {
            write!(f, "Verify: OK, the rebuilt projections match the stored ones")
        } else {
            write!(f, "Verify: {} differences", self.differences.len())?;
            for difference in &self.differences {
                write!(f, "\n  - {difference}")?;
            }
            Ok(())
        }
    }
}

/// How much a store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Plans in the store.
    pub plans: u64,
    /// Events in the log.
    pub events: u64,
    /// Plans by processing state (`queued`, `processing`, …).
    pub plans_by_state: BTreeMap<String, u64>,
    /// The store's size on disk, where the store can tell.
    pub bytes: Option<u64>,
    /// The oldest plan's last activity.
    pub oldest_activity: Option<DateTime<Utc>>,
    /// The newest plan's last activity.
    pub newest_activity: Option<DateTime<Utc>>,
}

impl StoreStats {
    /// Statistics of a catalog: versions have no gaps, so a plan's version is its event count.
    pub fn from_views(views: &[PlanView], bytes: Option<u64>) -> Self {
        let mut stats = StoreStats { bytes, ..StoreStats::default() };
        for view in views {
            stats.plans += 1;
            stats.events += u64::from(view.version);
            *stats.plans_by_state.entry(view.state.state.as_str().to_owned()).or_default() += 1;
            stats.oldest_activity =
                Some(stats.oldest_activity.map_or(view.last_activity_at, |t| t.min(view.last_activity_at)));
            stats.newest_activity =
                Some(stats.newest_activity.map_or(view.last_activity_at, |t| t.max(view.last_activity_at)));
        }
        stats
    }
}

/// The checks every store shares: the log in global order has strictly increasing positions and
/// gapless versions per plan; the catalog, every plan's compact view and every plan's full view
/// equal a replay of the log. Memory holds one compact view per plan and one plan's events.
pub async fn verify_folds<S: PlanStore>(store: &S) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let mut rebuilt = Catalog::default();
    let mut last_position = 0u32;
    let mut versions: HashMap<PlanId, u32> = HashMap::new();
    let mut stream = store.stream_all(Select::All).await?;
    while let Some(stored) = stream.try_next().await? {
        report.count("events", 1);
        let position = stored.sequence_number();
        if position <= last_position {
            report.differ(format!("the log's global order goes back: position {position} follows {last_position}"));
        }
        last_position = last_position.max(position);
        let plan_id = stored.source_id();
        let expected = versions.get(plan_id).map_or(1, |v| v + 1);
        if stored.version() != expected {
            report.differ(format!(
                "plan {plan_id}: version {} follows version {} in the log; versions must have no gaps",
                stored.version(),
                expected - 1
            ));
        }
        versions.insert(plan_id.clone(), stored.version());
        rebuilt.apply(&stored);
    }
    drop(stream);

    let served: HashMap<PlanId, PlanView> =
        store.catalog().await?.into_iter().map(|view| (view.plan_id.clone(), view)).collect();
    let ids: BTreeSet<&PlanId> = served.keys().chain(rebuilt.plans.keys()).collect();
    for id in ids {
        report.count("catalog_plans", 1);
        compare_views(&format!("catalog: plan {id}"), served.get(id), rebuilt.plans.get(id), &mut report.differences);
    }
    // The listing a page at a time is the rebuilt catalog in the listing's order.
    let mut expected: Vec<&PlanView> = rebuilt.plans.values().collect();
    expected.sort_by(|a, b| crate::store::listing_order(a, b));
    let mut listed: Vec<(PlanId, u32)> = Vec::with_capacity(expected.len());
    let mut ask = CatalogQuery::first(500);
    loop {
        let page = store.catalog_page(&ask).await?;
        let end = page.len() < ask.limit();
        ask = ask.after(page.last().map(CatalogCursor::after));
        listed.extend(page.into_iter().map(|view| (view.plan_id, view.version)));
        if end || listed.len() > expected.len() {
            break;
        }
    }
    report.count("listing_plans", listed.len() as u64);
    let expected: Vec<(PlanId, u32)> = expected.into_iter().map(|view| (view.plan_id.clone(), view.version)).collect();
    if listed != expected {
        let first = listed.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(listed.len().min(expected.len()));
        report.differ(format!(
            "the listing read a page at a time holds {} plans and the log {}, newest activity first; they part at place {}",
            listed.len(),
            expected.len(),
            first + 1
        ));
    }
    for (id, compact) in &rebuilt.plans {
        report.count("summary_views", 1);
        let served = store.load_summary_view(id).await?;
        compare_views(&format!("summary view of plan {id}"), served.as_ref(), Some(compact), &mut report.differences);
        report.count("full_views", 1);
        let events: Vec<StoredEvent> = store.stream(id.clone(), Select::All).await?.try_collect().await?;
        let replayed = PlanView::replay(&events);
        let served = store.load_view(id).await?;
        compare_views(&format!("full view of plan {id}"), served.as_ref(), replayed.as_ref(), &mut report.differences);
    }
    Ok(report.finish())
}

/// Names each differing field of a view as served (`stored`) and as rebuilt, as JSON paths.
pub fn compare_views(context: &str, stored: Option<&PlanView>, rebuilt: Option<&PlanView>, out: &mut Vec<String>) {
    match (stored, rebuilt) {
        (None, None) => {}
        (Some(_), None) => out.push(format!("{context}: stored, but the log has no such plan")),
        (None, Some(_)) => out.push(format!("{context}: missing, but the log has this plan")),
        (Some(a), Some(b)) if a == b => {}
        (Some(a), Some(b)) => {
            let (a, b) =
                (serde_json::to_value(a).expect("views serialize"), serde_json::to_value(b).expect("views serialize"));
            let mut paths = Vec::new();
            diff_json("", &a, &b, &mut paths);
            for (path, stored, rebuilt) in paths {
                out.push(format!("{context}: {path} is {stored} in the store, {rebuilt} in the rebuild"));
            }
        }
    }
}

fn diff_json(path: &str, a: &Value, b: &Value, out: &mut Vec<(String, String, String)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let null = Value::Null;
                diff_json(&format!("{path}.{key}"), x.get(key).unwrap_or(&null), y.get(key).unwrap_or(&null), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (a, b)) in x.iter().zip(y).enumerate() {
                diff_json(&format!("{path}[{i}]"), a, b, out);
            }
        }
        _ if a != b => out.push((path.trim_start_matches('.').to_owned(), a.to_string(), b.to_string())),
        _ => {}
    }
}
