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

struct OffThreadMemory;

impl StoreFixture for OffThreadMemory {
    type Store = crate::OffThreadStore<InMemoryStore>;

    fn fresh(&self) -> Self::Store {
        crate::OffThreadStore::new(InMemoryStore::new(), 2)
    }

    fn reopen(&self, store: &Self::Store) -> Self::Store {
        store.clone()
    }
}

#[test]
fn the_off_thread_face_of_a_store_passes_the_conformance_kit() {
    testkit::run("off-thread memory", &OffThreadMemory);
}
