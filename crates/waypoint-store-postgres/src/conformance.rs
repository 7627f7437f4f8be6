//! The PostgreSQL store against the store conformance kit: each case gets a fresh database, and
//! "another handle" is a second pool on the same database, as a second process would open it.

use waypoint_application::testkit::{self, StoreFixture};

use crate::testing::fresh_store;
use crate::PostgresStore;

struct Databases;

impl StoreFixture for Databases {
    type Store = PostgresStore;

    fn fresh(&self) -> PostgresStore {
        fresh_store("kit")
    }

    fn reopen(&self, store: &PostgresStore) -> PostgresStore {
        store.reconnect().expect("open the same database again")
    }
}

#[test]
fn the_postgres_store_passes_the_conformance_kit() {
    testkit::run("postgres", &Databases);
}
