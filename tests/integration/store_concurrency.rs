//! Several processes append to one store at once: to different plans (all succeed) and to one
//! plan (exactly one wins each version, the rest retry after a conflict).

use super::store_child::{check_store, spawn};

#[test]
fn store_takes_appends_from_several_processes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    // Create the store first so the children do not all race to create it.
    drop(waypoint_store_file::FileStore::open(dir.path()).unwrap());
    let mut children = Vec::new();
    for k in 0..3 {
        children.push(spawn(&["append", path, &format!("own-{k}"), "40"]));
        children.push(spawn(&["append", path, "shared", "20"]));
    }
    let acks: Vec<_> = children.into_iter().flat_map(|c| c.finish()).collect();
    assert_eq!(acks.len(), 3 * 40 + 3 * 20);
    let mut shared: Vec<u32> = acks.iter().filter(|a| a.plan == "shared").map(|a| a.version).collect();
    shared.sort_unstable();
    assert_eq!(shared, (1..=60).collect::<Vec<_>>(), "each version of the shared plan has exactly one winner");
    check_store(dir.path(), &acks);
}
