//! The group-commit machinery on its own, with a fake commit: batching, routing each caller's
//! results back to it, and handing leadership on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use super::GroupCommit;

/// A commit that answers each request with its double.
fn double(batch: Vec<u32>) -> Vec<u32> {
    batch.into_iter().map(|r| r * 2).collect()
}

#[test]
fn a_lone_caller_leads_and_gets_its_own_results() {
    let group = GroupCommit::default();
    let commits = AtomicUsize::new(0);
    let after = AtomicUsize::new(0);
    let commit = |batch| {
        commits.fetch_add(1, Ordering::SeqCst);
        double(batch)
    };
    let results = group.submit(vec![1, 2, 3], commit, || {
        after.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(results, vec![2, 4, 6]);
    assert_eq!((commits.load(Ordering::SeqCst), after.load(Ordering::SeqCst)), (1, 1));
    // The lead was given up: the next caller leads again.
    assert_eq!(group.submit(vec![5], double, || {}), vec![10]);
}

#[test]
fn callers_queued_during_a_commit_share_the_next_one() {
    let group = GroupCommit::default();
    let batches = Mutex::new(Vec::new());
    let (in_commit, entered) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let (group_ref, batches_ref) = (&group, &batches);
        let leader = scope.spawn(move || {
            let commit = |batch: Vec<u32>| {
                if batches_ref.lock().unwrap().is_empty() {
                    in_commit.send(()).unwrap();
                    released.recv().unwrap();
                }
                batches_ref.lock().unwrap().push(batch.clone());
                double(batch)
            };
            group_ref.submit(vec![1], commit, || {})
        });
        entered.recv().unwrap();
        let followers: Vec<_> = (2..=4)
            .map(|n| {
                let group = &group;
                // A follower never leads here: its commit must not be called.
                scope.spawn(move || group.submit(vec![n, n * 10], |_| unreachable!("not the leader"), || {}))
            })
            .collect();
        while group.queued() < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        release.send(()).unwrap();
        assert_eq!(leader.join().unwrap(), vec![2]);
        for (n, follower) in (2..=4).zip(followers) {
            assert_eq!(follower.join().unwrap(), vec![n * 2, n * 20]);
        }
    });
    let batches = batches.into_inner().unwrap();
    assert_eq!(batches.len(), 2, "{batches:?}");
    let mut second = batches[1].clone();
    second.sort_unstable();
    assert_eq!(second, vec![2, 3, 4, 20, 30, 40]);
}

#[test]
fn many_callers_each_get_exactly_their_results_while_the_lead_moves_on() {
    let group = GroupCommit::default();
    let commits = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..8u32 {
            let (group, commits) = (&group, &commits);
            scope.spawn(move || {
                for i in 0..200u32 {
                    let requests = vec![t * 1_000_000 + i * 2, t * 1_000_000 + i * 2 + 1];
                    let want = double(requests.clone());
                    let commit = |batch| {
                        commits.fetch_add(1, Ordering::SeqCst);
                        double(batch)
                    };
                    assert_eq!(group.submit(requests, commit, || {}), want);
                }
            });
        }
    });
    let commits = commits.load(Ordering::SeqCst);
    assert!((1..=1600).contains(&commits), "{commits} commits for 1,600 submissions");
    assert_eq!(group.queued(), 0);
}
