//! The layout's names are part of the on-disk format: pinned here, so a rename is a test failure.

use std::path::Path;

use waypoint_domain::PlanId;

use super::{temp_for, Layout};

#[test]
fn every_name_is_the_documented_one() {
    let layout = Layout::new("/s");
    let plan = PlanId::parse("p-1").unwrap();
    let cases = [
        (layout.log(), "/s/events.log"),
        (layout.store_lock(), "/s/store.lock"),
        (layout.write_lock(), "/s/write.lock"),
        (layout.locks_dir(), "/s/locks"),
        (layout.run_lock(&plan), "/s/locks/p-1.lock"),
        (layout.checkpoint(), "/s/catalog.ckpt"),
        (layout.index_dir(), "/s/index"),
        (layout.plan_index(&plan), "/s/index/p-1.idx"),
        (layout.views_dir(), "/s/views"),
        (layout.view(&plan), "/s/views/p-1.view"),
        (layout.torn_dir(), "/s/torn"),
        (layout.torn_tail(42, "T"), "/s/torn/events.log.at-42.T.torn"),
        (layout.repair_cut(42, "T"), "/s/torn/events.log.repair-at-42.T.cut"),
        (layout.backup_dir(), "/s/backup"),
        (layout.backup("T"), "/s/backup/events.log.T.bak"),
    ];
    for (built, documented) in cases {
        assert_eq!(built, Path::new(documented));
    }
    assert_eq!(layout.dir(), Path::new("/s"));
    let temp = format!("/s/catalog.ckpt.{}.tmp", std::process::id());
    assert_eq!(temp_for(&layout.checkpoint()), Path::new(&temp));
}
