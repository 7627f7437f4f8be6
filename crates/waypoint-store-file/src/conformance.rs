//! The file store against the store conformance kit: each case gets a fresh store directory, and
//! "another handle" is the same directory opened again, as a second process would.

use std::path::PathBuf;
use std::sync::Mutex;

use waypoint_application::testkit::{self, StoreFixture};

use crate::FileStore;

struct Files {
    root: tempfile::TempDir,
    next: Mutex<usize>,
}

impl StoreFixture for Files {
    type Store = FileStore;

    fn fresh(&self) -> FileStore {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        *next += 1;
        let dir: PathBuf = self.root.path().join(format!("store-{next}"));
        FileStore::open(dir).expect("open a fresh file store")
    }

    fn reopen(&self, store: &FileStore) -> FileStore {
        FileStore::open(store.dir()).expect("open the same store again")
    }

    fn settle(&self, store: &FileStore) {
        store.checkpoint().expect("write a checkpoint");
    }
}

#[test]
fn the_file_store_passes_the_conformance_kit() {
    let fixture = Files { root: tempfile::tempdir().expect("a scratch directory"), next: Mutex::new(0) };
    testkit::run("file", &fixture);
}
