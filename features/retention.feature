Feature: Retention removes old finished plans, after archiving them
  A compaction chooses every plan that finished (applied, cancelled, or a plan run from a plan
  file whose one phase completed) and whose last activity is older than a cutoff, writes each one's whole history to an
  archive, and only then removes it from the store. A plan that may still move (resumable,
  processing, queued, errored, constrained) is never chosen, however old, and neither is a
  plumbing plan whose phase completed: it is between phases, and the next one may still start. A removed plan answers
  plan_not_found, saying it was removed by retention and where its events are, and its id is
  never used again. A dry run lists what would go and writes nothing.
  The clock starts at 2026-01-01T00:00:00Z and every accepted command takes one second.

  Rule: only finished plans older than the cutoff go, and they go to the archive first

    Scenario: applied, cancelled and completed plans older than the cutoff are removed and archived
      Given a plan "applied-1" in apply applied
      And a plan "cancelled-1" in strategize cancelled
      And a plan "completed-1" run from the plan file "/plans/nightly.toml" that completed
      And 31 days pass
      When plans last active more than 30 days ago are compacted
      Then the command is accepted
      And the compaction removed "applied-1, cancelled-1, completed-1"
      And the archive holds the whole histories of "applied-1, cancelled-1, completed-1"
      And the plans listed are ""
      And we look at plan "cancelled-1"
      And the plan was removed by retention, with its 3 events archived

    Scenario: plans that may still move are never removed, however old
      Given a plan "interrupted" with 3 steps
      And the plan starts strategize as runner "runner-1"
      And step 1 completes
      And the plan shuts down
      And the runner "runner-1" dies
      And a plan "processing" in strategize processing
      And a plan "queued" in action queued
      And a plan "errored" in strategize errored
      And a plan "constrained" in apply constrained
      And a plan "between-phases" in strategize complete
      And a plan "execute-done" in execute complete
      And 400 days pass
      When plans last active more than 30 days ago are compacted
      Then the command is accepted
      And the compaction removed ""
      And no events were appended
      And the archive is empty
      And the plans listed are "execute-done, between-phases, constrained, errored, queued, processing, interrupted"

    Scenario: a finished plan newer than the cutoff is kept
      Given a plan "old" in apply applied
      And 40 days pass
      And a plan "recent" in apply applied
      And 10 days pass
      When plans last active more than 30 days ago are compacted
      Then the command is accepted
      And the compaction removed "old"
      And the archive holds the whole histories of "old"
      And the plans listed are "recent"

    Scenario: a dry run lists what would be removed and writes nothing
      Given a plan "old-1" in apply applied
      And a plan "old-2" in strategize cancelled
      And 40 days pass
      When a dry run of compacting plans last active more than 30 days ago is requested
      Then the command is accepted
      And the compaction removed "old-1, old-2"
      And the store's bytes are unchanged
      And no events were appended
      And the archive is empty
      And the plans listed are "old-2, old-1"

    Scenario: compacting again removes nothing more
      Given a plan "old" in apply applied
      And 40 days pass
      And plans last active more than 30 days ago are compacted
      When plans last active more than 30 days ago are compacted
      Then the command is accepted
      And the compaction removed ""
      And no events were appended

  Rule: a removed plan is not found, says why, and keeps its id

    Scenario: a removed plan answers plan_not_found, saying it was removed by retention
      Given a plan "old" in apply applied
      And 40 days pass
      And plans last active more than 30 days ago are compacted
      And we work on plan "old"
      When the plan's summary is requested
      Then the command is refused with Removed
      And the error code is "plan_not_found"
      And the error message is "plan old was removed by retention at 2026-02-10 00:00:07 UTC; its 7 events are archived in scenario-archive"

    Scenario: creating a plan with a removed plan's id is refused
      Given a plan "old" in apply applied
      And 40 days pass
      And plans last active more than 30 days ago are compacted
      When a plan "old" is created
      Then the command is refused with StoreRemoved
      And the error code is "plan_removed"
      And no events were appended

    Scenario: forking onto a removed plan's id is refused
      Given a plan "old" in apply applied
      And 40 days pass
      And plans last active more than 30 days ago are compacted
      And a plan "alpha" with 2 steps
      And the plan starts strategize as runner "runner-1"
      And step 1 completes
      When the plan is forked at step 1 as "old"
      Then the command is refused with StoreRemoved
      And the error code is "plan_removed"
      And no events were appended
