Feature: Step outputs, step names and attempts
  A checkpoint may carry the step's name and its output, a JSON value of at most 1 MiB encoded.
  The log keeps both, so a resumed run reads every completed step's output back without running
  the step again. A step recorded under one name is never recorded again under another. A failed
  attempt that will be retried is recorded and leaves the plan processing.
  The clock starts at 2026-01-01T00:00:00Z and every accepted command takes one second.

  Background:
    Given a plan "alpha" with 3 steps
    And the plan starts strategize as runner "runner-1"

  Rule: a checkpoint carries the step's name and output

    Scenario: a checkpoint's name and output are read back from the log
      When step 1 "build" completes with output {"version": "1.4.0", "files": 3}
      Then the command is accepted
      And the appended event is "step_completed"
      And reading the plan back gives the completed steps:
        | step | name  | output                             |
        | 1    | build | {"version": "1.4.0", "files": 3}   |

    Scenario: a resumed run gets every completed step's output back
      Given step 1 "build" completes with output {"version": "1.4.0"}
      And step 2 "test" completes with output ["unit", "integration"]
      And the plan shuts down
      When the plan resumes
      Then the resume point is step 3
      And reading the plan back gives the completed steps:
        | step | name  | output                  |
        | 1    | build | {"version": "1.4.0"}    |
        | 2    | test  | ["unit", "integration"] |

    Scenario: an output of exactly 1 MiB is accepted
      When step 1 "build" completes with an output of 1048576 bytes
      Then the command is accepted
      And 1 event was appended

    Scenario: an oversized output is refused and nothing is written
      When step 1 "build" completes with an output of 1048577 bytes
      Then the command is refused with OutputTooLarge
      And the error code is "output_too_large"
      And the error message is "the step output is 1048577 bytes when encoded as JSON; the limit is 1048576 bytes; store large data elsewhere and record a reference"
      And no events were appended

    Scenario: recording the same checkpoint again is a retry
      Given step 1 "build" completes with output {"a": 1}
      When step 1 "build" completes with output {"a": 1}
      Then the existing checkpoint of step 1 is returned
      And no events were appended

    Scenario: the same step with another output is a conflict
      Given step 1 "build" completes with output {"a": 1}
      When step 1 "build" completes with output {"a": 2}
      Then the command is refused with ConflictingCheckpoint
      And no events were appended

  Rule: a step keeps its name

    Scenario: a completed step recorded again under another name is a step mismatch
      Given step 1 "build" completes
      When step 1 "lint" completes
      Then the command is refused with StepMismatch
      And the error code is "step_mismatch"
      And the error message names "build" and "lint"
      And no events were appended

    Scenario: the uncertain step completed under another name is a step mismatch
      Given step 1 "build" starts as attempt 1
      When step 1 "lint" completes
      Then the command is refused with StepMismatch
      And no events were appended

  Rule: a failed attempt that will be retried keeps the plan processing

    Scenario: a failed attempt, then a second attempt completes the step
      Given step 1 "build" starts as attempt 1
      When attempt 1 of step 1 fails with exit code 3
      Then the command is accepted
      And the appended event is "step_attempt_failed"
      And the plan is strategize processing
      And the resume summary shows:
        | uncertain_step | absent  |
        | status         | running |
      When step 1 "build" starts as attempt 2
      Then the command is accepted
      When step 1 "build" completes
      Then the command is accepted
      And the history reads "plan_created, phase_started, step_started, step_attempt_failed, step_started, step_completed"

    Scenario: a timed-out attempt is recorded with its reason
      Given step 1 "build" starts as attempt 1
      When attempt 1 of step 1 fails with a timeout
      Then the command is accepted
      And the appended event is "step_attempt_failed"

    Scenario: only the running attempt can fail
      Given step 1 "build" starts as attempt 2
      When attempt 1 of step 1 fails with signal 9
      Then the command is refused with AttemptNotRunning
      And the error code is "attempt_not_running"
      And no events were appended
