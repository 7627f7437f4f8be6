//! kill -9 at random moments while a child appends: every acknowledged event survives exactly
//! once and the store opens with no manual step. `WAYPOINT_KILL_LOOP_ITERATIONS=1000` (or more)
//! runs the long version; `WAYPOINT_KILL_LOOP_SEED` replays a run.

use std::time::Duration;

use super::store_child::{check_store, spawn, Ack, XorShift};

#[test]
fn store_keeps_every_acknowledged_event_through_kill_9_loops() {
    let iterations: u32 =
        std::env::var("WAYPOINT_KILL_LOOP_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let seed: u64 = std::env::var("WAYPOINT_KILL_LOOP_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("kill loop: {iterations} kills, WAYPOINT_KILL_LOOP_SEED={seed}");
    let mut rng = XorShift(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acks: Vec<Ack> = Vec::new();
    let mut kills_after_an_ack = 0;
    for i in 0..iterations {
        let plan = format!("kill-{}", i % 3);
        let child = spawn(&["append", dir.path().to_str().unwrap(), &plan, "0"]);
        // Wait for a random number of acknowledgements (0 to 7), then a random extra moment, so
        // kills land before open, mid-append, mid-fsync and between appends.
        let wanted = rng.next(8);
        let mut seen = Vec::new();
        while (seen.len() as u64) < wanted {
            match child.lines.recv_timeout(Duration::from_secs(10)) {
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_micros(rng.next(3000)));
        let acked = child.kill_and_collect();
        if !acked.is_empty() {
            kills_after_an_ack += 1;
        }
        acks.extend(acked);
        check_store(dir.path(), &acks);
    }
    eprintln!("kill loop: {} acknowledged events, {kills_after_an_ack} kills after an ack", acks.len());
    assert!(kills_after_an_ack > 0, "the children acknowledged nothing: the loop tested nothing");
}
