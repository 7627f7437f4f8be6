//! Fuzz target: the record decoder must never panic, and a record it accepts must re-encode to
//! the same bytes. The body is `waypoint_store_file::fuzz_decode`, which the unit tests also run.

#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    waypoint_store_file::fuzz_decode(bytes);
});
