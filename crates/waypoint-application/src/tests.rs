//! Unit tests of the application crate: the in-memory store passes the store conformance kit.

use crate::testkit::{self, StoreFixture};
use crate::InMemoryStore;

struct Memory;

impl StoreFixture for Memory {
    type Store = InMemoryStore;

    fn fresh(&self) -> InMemoryStore {
        InMemoryStore::new()
    }

    fn reopen(&self, store: &InMemoryStore) -> InMemoryStore {
        // One process, one store: another handle is a clone sharing the same log and locks.
        store.clone()
    }
}

#[test]
fn the_in_memory_store_passes_the_conformance_kit() {
    testkit::run("memory", &Memory);
}
