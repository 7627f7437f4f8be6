//! Retention in the service: an archive that cannot take a plan stops the compaction before
//! anything is removed.

use chrono::{Duration, TimeZone, Utc};
use eventually::store::{EventStore, Expected};
use futures::executor::block_on;
use waypoint_domain::{Phase, PlanId};

use crate::service::{CompactRequest, NewPlan, PlanResumeService};
use crate::store::PlanStore;
use crate::testkit::plan_created;
use crate::{ErrorKind, InMemoryStore, ManualClock, ServiceError};

#[test]
fn an_archive_holding_another_plan_under_a_due_id_stops_the_compaction_before_any_removal() {
    let store = InMemoryStore::new();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let service = PlanResumeService::new(store.clone()).with_clock(clock.clone());
    let (clash, fine) = (PlanId::parse("clash").unwrap(), PlanId::parse("fine").unwrap());
    block_on(async {
        for id in [&fine, &clash] {
            let new = NewPlan { id: Some(id.clone()), start: Some((Phase::Strategize, None)), ..NewPlan::default() };
            service.create_plan(new).await.unwrap();
            service.cancel(id, None).await.unwrap();
        }
    });
    let foreign = InMemoryStore::new();
    block_on(foreign.clone().append(clash.clone(), Expected::Exact(0), vec![plan_created()])).unwrap();
    clock.advance(Duration::days(2));
    let request = CompactRequest { older_than: Duration::days(1), dry_run: false };
    match block_on(service.compact(request, &foreign, "foreign")) {
        Err(error @ ServiceError::ArchiveConflict { .. }) => {
            assert_eq!((error.kind(), error.code()), (ErrorKind::Conflict, "archive_conflict"));
            assert!(error.to_string().contains("nothing was removed"), "{error}");
            let ServiceError::ArchiveConflict { plan_id, archive } = error else { unreachable!() };
            assert_eq!((plan_id, archive.as_str()), (clash.clone(), "foreign"));
        }
        other => panic!("the clash must stop the compaction: {other:?}"),
    }
    for id in [&fine, &clash] {
        assert!(block_on(service.load(id)).is_ok(), "{id} is still in the store");
        assert!(block_on(store.removal(id)).unwrap().is_none());
    }
}
