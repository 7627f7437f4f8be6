Feature: People in the loop: approval steps and pause
  A step may need a person's approval before it runs. Reaching it records the question and
  stops the run: the plan is waiting, holds nothing, and cannot resume until someone decides.
  An approval lets the next run go past the step; a rejection fails the plan for good
  (approval_rejected). Approving or rejecting a plan that does not wait there is invalid_state;
  the same approval twice is harmless. A pause asks a running plan to stop at its next step
  boundary; a plan nobody runs is paused at once, and a paused plan continues when run again.
  The clock starts at 2026-01-01T00:00:00Z and every accepted command takes one second.

  Background:
    Given a plan "release" with 3 steps
    And the plan starts strategize as runner "runner-1"
    And step 1 starts
    And step 1 completes

  Rule: an approval step stops the run until someone decides

    Scenario: a waiting plan is not resumable until it is approved, and then it is
      When the run stops before step 2 to ask "Deploy to production?"
      Then the command is accepted
      And the resume summary shows:
        | status               | waiting               |
        | waiting_for.step     | 2                     |
        | waiting_for.question | Deploy to production? |
      And the plan is not eligible to resume because "waiting_for_approval"
      When "alice" approves saying "checked the migration"
      Then the command is accepted
      And the appended event is "step_approved"
      And the plan is eligible to resume
      And the resume summary shows:
        | status      | interrupted |
        | waiting_for | absent |

    Scenario: a rejection fails the plan for good
      Given the run stops before step 2 to ask "Deploy to production?"
      When "bob" rejects because "not during the freeze"
      Then the command is accepted
      And the plan is strategize errored
      And the plan is not eligible to resume because "approval_rejected"
      And the resume summary shows:
        | status | failed |
      When "alice" approves
      Then the command is refused with InvalidState

    Scenario: two identical approvals race: one writes, the other is harmless
      Given the run stops before step 2 to ask "Deploy?"
      And "alice" approves
      When "alice" approves
      Then the command is accepted
      And no events were appended

    Scenario: a second, different decision is invalid_state
      Given the run stops before step 2 to ask "Deploy?"
      And "alice" approves
      When "bob" rejects because "too late"
      Then the command is refused with InvalidState
      And the error code is "invalid_state"

    Scenario: approving a plan that does not wait, or another step, is invalid_state
      When "alice" approves
      Then the command is refused with InvalidState
      Given the run stops before step 2 to ask "Deploy?"
      When "alice" approves step 3
      Then the command is refused with InvalidState

    Scenario: the waiting step cannot start before it is approved
      Given the run stops before step 2 to ask "Deploy?"
      When the plan resumes
      Then the command is refused with NotEligible
      And the refusal lists the reasons "waiting_for_approval"
      When step 2 starts
      Then the command is refused with InvalidState

  Rule: a pause stops a running plan at its next step boundary

    Scenario: a pause asked while the runner works stops it before the next step
      When "ops" pauses the plan
      Then the command is accepted
      And the appended event is "pause_requested"
      And the resume summary shows:
        | status | running |
      When step 2 starts
      Then the command is refused with PauseRequested
      And the error code is "pause_requested"

    Scenario: a pause during a retry delay stops the retry
      Given step 2 starts
      And attempt 1 of step 2 fails with exit code 3
      When "ops" pauses the plan
      Then the command is accepted
      When step 2 starts
      Then the command is refused with PauseRequested

    Scenario: a pause of a plan nobody runs takes effect at once, and it resumes
      Given the plan shuts down
      When "ops" pauses the plan
      Then the command is accepted
      And the resume summary shows:
        | status             | paused |
        | interruption.reason | paused |
      And the plan is eligible to resume
      When "ops" pauses the plan
      Then no events were appended

    Scenario: a pause of a plan whose runner died takes effect at once
      Given the runner "runner-1" dies
      When "ops" pauses the plan
      Then the command is accepted
      And the appended events are "pause_requested, interrupted"
      And the resume summary shows:
        | status | paused |
