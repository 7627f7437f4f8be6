Feature: Fork a plan from any completed step
  A fork is a new plan made from a source plan's completed steps: it holds copies of the
  source's checkpoints 1..N of its current phase (outputs included), its name, totals,
  fingerprints and definition source, starts queued in the source's phase, and resumes at step
  N+1. The source is only read: not one of its events changes. A fork never reads its source
  again. Forking at a step that did not complete is refused.
  The clock starts at 2026-01-01T00:00:00Z and every accepted command takes one second.

  Rule: a fork copies the completed steps and resumes after them

    Scenario: a fork of an interrupted plan keeps the outputs of the steps it copies
      Given a plan "alpha" with 4 steps
      And the plan starts strategize as runner "runner-1"
      And step 1 "fetch" completes with output {"rows": 120}
      And step 2 "classify" completes with output ["billing"]
      And step 3 "draft" completes with output "Dear customer"
      And the plan shuts down
      When the plan is forked at step 2 as "beta"
      Then the command is accepted
      And 1 event was appended
      And the appended event is "plan_forked"
      And we look at plan "beta"
      And it is a fork of "alpha" at step 2, queued in strategize, resuming at step 3
      And reading the plan back gives the completed steps:
        | step | name     | output        |
        | 1    | fetch    | {"rows": 120} |
        | 2    | classify | ["billing"]   |

    Scenario: a fork resumes at the step after the copied ones
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-1"
      And steps 1 to 2 complete
      And the plan shuts down
      And the plan is forked at step 1 as "beta"
      And we work on plan "beta"
      When the plan resumes
      Then the resume point is step 2

    Scenario: a fork runs on its own, and its source does not change
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-1"
      And steps 1 to 2 complete
      And the plan shuts down
      And the plan is forked at step 1 as "beta"
      And we work on plan "beta"
      And the plan resumes
      And step 2 completes
      When step 3 completes
      Then the command is accepted
      And the history reads "plan_forked, resumed, step_completed, step_completed"
      And we look at plan "alpha"
      And the history reads "plan_created, phase_started, step_completed, step_completed, interrupted"

    Scenario: a fork of an errored plan
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-1"
      And step 1 completes
      And the plan fails
      When the plan is forked at step 1 as "beta"
      Then the command is accepted
      And we look at plan "beta"
      And it is a fork of "alpha" at step 1, queued in strategize, resuming at step 2

    Scenario: a fork of a completed plan runs its later steps again
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-1"
      And steps 1 to 3 complete
      And the plan completes the phase
      When the plan is forked at step 2 as "beta"
      Then the command is accepted
      And we look at plan "beta"
      And it is a fork of "alpha" at step 2, queued in strategize, resuming at step 3

    Scenario: a fork of an applied plan starts over in its phase
      Given a plan "alpha" in apply applied
      When the plan is forked at step 0 as "beta"
      Then the command is accepted
      And we look at plan "beta"
      And it is a fork of "alpha" before step 1, queued in apply, resuming at step 1

    Scenario: a fork at step 0 copies nothing
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-1"
      And steps 1 to 2 complete
      When the plan is forked at step 0 as "beta"
      Then the command is accepted
      And we look at plan "beta"
      And it is a fork of "alpha" before step 1, queued in strategize, resuming at step 1

    Scenario: a fork of a fork copies what the fork had
      Given a plan "alpha" with 4 steps
      And the plan starts strategize as runner "runner-1"
      And steps 1 to 3 complete
      And the plan is forked at step 3 as "beta"
      And we work on plan "beta"
      When the plan is forked at step 2 as "gamma"
      Then the command is accepted
      And we look at plan "gamma"
      And it is a fork of "beta" at step 2, queued in strategize, resuming at step 3

  Rule: only completed steps can be forked, and a fork takes a new id

    Scenario: forking at a step that did not complete is refused and writes nothing
      Given a plan "alpha" with 4 steps
      And the plan starts strategize as runner "runner-1"
      And steps 1 to 2 complete
      And step 3 starts
      When the plan is forked at step 3 as "beta"
      Then the command is refused with StepNotCompleted
      And the error code is "step_not_completed"
      And no events were appended

    Scenario: forking onto an existing plan's id is refused
      Given a plan "beta" with 2 steps
      And a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-1"
      And step 1 completes
      When the plan is forked at step 1 as "beta"
      Then the command is refused with AlreadyExists
      And no events were appended

  Rule: a fork never depends on its source again

    Scenario: a fork resumes after its copied steps once retention has removed its source
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-1"
      And step 1 "fetch" completes with output {"rows": 120}
      And step 2 "classify" completes with output ["billing"]
      And the plan is forked at step 2 as "beta"
      And the plan is cancelled
      And the runner "runner-1" dies
      And 40 days pass
      And plans last active more than 30 days ago are compacted
      And the compaction removed "alpha"
      And we work on plan "beta"
      When the plan resumes
      Then the resume point is step 3
      And reading the plan back gives the completed steps:
        | step | name     | output        |
        | 1    | fetch    | {"rows": 120} |
        | 2    | classify | ["billing"]   |
      And we look at plan "alpha"
      And the plan was removed by retention, with its 5 events archived
