//! Continue by key: the plans of one plan file are found from the file's absolute path alone,
//! without reading the catalog.
//!
//! The n-th plan made from a file (n = 1, 2, …; `--new` makes the next one) has the id
//! `hex(sha256("waypoint-run", 0, path, 0, n))[..20]`: 20 hex digits, unrelated between
//! generations, so that short id prefixes stay unique. The step engine finds the newest plan
//! (`waypoint_application::engine::newest_generation`) in O(log n) plan loads.

use std::path::Path;

use sha2::{Digest, Sha256};
use waypoint_application::engine::RunKey;
use waypoint_domain::PlanId;

use crate::text::hex;

/// How many hex digits of the digest make a keyed id (80 bits).
const KEY_DIGITS: usize = 20;

/// The id of the `generation`-th plan made from the plan file at `absolute`.
pub fn keyed_id(absolute: &Path, generation: u64) -> PlanId {
    let mut hasher = Sha256::new();
    hasher.update(b"waypoint-run\0");
    hasher.update(absolute.as_os_str().as_encoded_bytes());
    hasher.update(b"\0");
    hasher.update(generation.to_le_bytes());
    let digest = hex(&hasher.finalize());
    PlanId::parse(&digest[..KEY_DIGITS]).expect("hex digits make a valid plan id")
}

/// The key of a plan file: its absolute path. The n-th plan made from it has the id
/// [`keyed_id`] gives.
#[derive(Debug, Clone, Copy)]
pub struct PlanFileKey<'a>(pub &'a Path);

impl RunKey for PlanFileKey<'_> {
    fn plan_id(&self, generation: u64) -> PlanId {
        keyed_id(self.0, generation)
    }
}

/// A fresh plan id of the same shape as a plan file's: 20 random hex digits.
pub fn random_id() -> PlanId {
    let digits = hex(uuid::Uuid::new_v4().as_bytes());
    PlanId::parse(&digits[..KEY_DIGITS]).expect("hex digits make a valid plan id")
}
