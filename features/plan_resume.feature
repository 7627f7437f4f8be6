Feature: Resuming an interrupted plan
  Waypoint records every completed step of a plan, so an interrupted plan picks up at the step
  after its last checkpoint. One eligibility function decides whether a plan can resume and
  lists every reason it cannot; every surface (resume, dry run, listing) agrees with it.
  The clock starts at 2026-01-01T00:00:00Z and every accepted command takes one second.

  Rule: a plan that cannot resume says every reason why

    Scenario: a plan still in action has nothing to resume yet
      Given a plan "alpha" with 3 steps
      Then the plan is not eligible to resume because "action_phase"
      When the plan resumes
      Then the command is refused with NotEligible
      And the refusal lists the reasons "action_phase"
      And no events were appended

    Scenario Outline: a terminal plan cannot resume
      Given a plan "alpha" in <phase> <state>
      Then the plan is not eligible to resume because "terminal_state"
      When the plan resumes
      Then the refusal lists the reasons "terminal_state"
      And no events were appended

      Examples:
        | phase      | state     |
        | apply      | applied   |
        | execute    | cancelled |

    Scenario: a plan whose runner still holds the run lock is still running
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-1"
      And step 1 completes
      Then the plan is not eligible to resume because "still_running"
      When the plan resumes
      Then the refusal lists the reasons "still_running"
      And no events were appended

    Scenario: a plan moved to processing by a lockless external worker is still running
      Given a plan "alpha" with 3 steps
      And the plan starts strategize
      And step 1 completes
      Then the plan is not eligible to resume because "still_running"
      And the resume summary shows:
        | interrupted  | false  |
        | interruption | absent |

    Scenario: an external worker that records its own interruption can be resumed
      Given a plan "alpha" with 3 steps
      And the plan starts strategize
      And step 1 completes
      When the plan shuts down
      Then the plan is eligible to resume

    Scenario: a complete phase has nothing to resume
      Given a plan "alpha" in strategize complete
      Then the plan is not eligible to resume because "nothing_to_resume"

    Scenario: a phase whose every step completed has nothing to resume
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-1"
      And steps 1 to 3 complete
      And the plan shuts down
      Then the plan is not eligible to resume because "nothing_to_resume"
      And the resume summary shows:
        | next_step        | absent |
        | remaining_steps  | 0      |
        | progress_percent | 100    |

    Scenario: a changed plan definition cannot resume
      Given a plan "alpha" with 3 steps and fingerprint "aaa111"
      And the plan starts strategize
      And step 1 completes
      And the plan shuts down
      And the caller's plan definition has fingerprint "bbb222"
      Then the plan is not eligible to resume because "definition_changed"
      When the plan resumes
      Then the refusal lists the reasons "definition_changed"
      And no events were appended

    Scenario: the same plan definition resumes
      Given a plan "alpha" with 3 steps and fingerprint "aaa111"
      And the plan starts strategize
      And step 1 completes
      And the plan shuts down
      And the caller's plan definition has fingerprint "aaa111"
      When the plan resumes
      Then the command is accepted

    Scenario: a lost snapshot blocks the resume
      Given a plan "alpha" with 3 steps
      And the plan starts strategize
      And step 1 completes with snapshot "sha256:0001"
      And the plan shuts down
      And the snapshot "sha256:0001" is lost
      Then the plan is not eligible to resume because "snapshot_missing"
      When the plan resumes
      Then the refusal lists the reasons "snapshot_missing"

    Scenario: a snapshot that is still there lets the plan resume
      Given a plan "alpha" with 3 steps
      And the plan starts strategize
      And step 1 completes with snapshot "sha256:0001"
      And the plan shuts down
      Then the plan is eligible to resume
      And the resume summary shows:
        | snapshot_id | sha256:0001 |
        | decision_id | decision-1  |

    Scenario: a plan in action with a changed definition gives both reasons
      Given a plan "alpha" with fingerprint "aaa111"
      And the caller's plan definition has fingerprint "bbb222"
      Then the plan is not eligible to resume because "action_phase, definition_changed"

    Scenario: a complete phase with a changed definition and a lost snapshot gives three reasons
      Given a plan "alpha" with 3 steps and fingerprint "aaa111"
      And the plan starts strategize
      And step 1 completes with snapshot "sha256:0001"
      And the plan completes the phase
      And the snapshot "sha256:0001" is lost
      And the caller's plan definition has fingerprint "bbb222"
      Then the plan is not eligible to resume because "nothing_to_resume, definition_changed, snapshot_missing"
      When the plan resumes
      Then the refusal lists the reasons "nothing_to_resume, definition_changed, snapshot_missing"

    Scenario: a running plan with a lost snapshot gives both reasons
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-1"
      And step 1 completes with snapshot "sha256:0001"
      And the snapshot "sha256:0001" is lost
      Then the plan is not eligible to resume because "still_running, snapshot_missing"

    Scenario: a real resume of a cancelled plan refuses with every reason, like the dry run
      Given a plan "alpha" with fingerprint "aaa111"
      And the plan starts strategize
      And the plan is cancelled
      And the caller's plan definition has fingerprint "bbb222"
      Then the plan is not eligible to resume because "terminal_state, definition_changed"
      When the plan resumes
      Then the refusal lists the reasons "terminal_state, definition_changed"

  Rule: checkpoints are recorded in order, once, within the total, while processing

    Scenario: steps completed in order become checkpoints
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      When steps 1 to 3 complete
      Then the command is accepted
      And 3 events were appended
      And the resume summary shows:
        | last_completed_step | 3          |
        | next_step           | 4          |
        | remaining_steps     | 1          |
        | decision_id         | decision-3 |
        | last_checkpoint_id  | present    |

    Scenario: a step that skips ahead is out of order
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And step 1 completes
      When step 3 completes
      Then the command is refused with StepOutOfOrder
      And no events were appended

    Scenario: the first checkpoint of a phase is step 1
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      When step 2 completes
      Then the command is refused with StepOutOfOrder

    Scenario: a step that starts out of order is refused too
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And step 1 completes
      When step 3 starts
      Then the command is refused with StepOutOfOrder

    Scenario: recording the last step again is an idempotent retry
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And step 1 completes
      And step 2 completes with snapshot "sha256:0002" with artifact "out/report.txt"
      When step 2 completes with snapshot "sha256:0002" with artifact "out/report.txt"
      Then the command is accepted
      And the existing checkpoint of step 2 is returned
      And no events were appended

    Scenario: recording an earlier step again is an idempotent retry
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And steps 1 to 3 complete
      When step 1 completes
      Then the existing checkpoint of step 1 is returned
      And no events were appended

    Scenario: two identical checkpoints racing are both accepted, and recorded once
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And step 1 completes
      When two runners record step 2 with the same payload at the same moment
      Then both are accepted and one of them appended
      And 1 event was appended

    Scenario: a retry after the plan was interrupted is refused, because the plan is not processing
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And step 1 completes
      And the plan shuts down
      When step 1 completes
      Then the command is refused with InvalidState
      And no events were appended

    Scenario Outline: the same step with a different payload is a conflict
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And step 1 completes
      And step 2 completes with snapshot "sha256:0002"
      When step 2 completes <payload>
      Then the command is refused with ConflictingCheckpoint
      And no events were appended

      Examples:
        | payload                                                |
        | with decision "decision-x" with snapshot "sha256:0002" |
        | with snapshot "sha256:9999"                            |
        | with snapshot "sha256:0002" with artifact "extra.txt"  |

    Scenario: a step beyond the total is refused
      Given a plan "alpha" with 3 steps
      And the plan starts strategize
      And steps 1 to 2 complete
      When step 4 completes
      Then the command is refused with StepBeyondTotal
      And no events were appended

    Scenario: once every step completed, another step is beyond the total
      Given a plan "alpha" with 3 steps
      And the plan starts strategize
      And steps 1 to 3 complete
      When step 4 completes
      Then the command is refused with StepBeyondTotal
      When step 4 starts
      Then the command is refused with StepBeyondTotal

    Scenario Outline: a checkpoint is refused unless the plan is processing
      Given a plan "alpha" in <phase> <state>
      When step 1 completes
      Then the command is refused with InvalidState
      And no events were appended

      Examples:
        | phase      | state       |
        | action     | queued      |
        | strategize | queued      |
        | strategize | complete    |
        | execute    | errored     |
        | apply      | constrained |

    Scenario: a checkpoint of a terminal plan is refused as terminal
      Given a plan "alpha" in apply applied
      When step 1 completes
      Then the command is refused with Terminal

    Scenario: the total cannot go below the last completed step
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And steps 1 to 3 complete
      When the total is set to 2
      Then the command is refused with TotalBelowCompleted
      And no events were appended

    Scenario: the total cannot be zero
      Given a plan "alpha"
      And the plan starts strategize
      When the total is set to 0
      Then the command is refused with ZeroTotal
      And no events were appended

    Scenario: a total equal to the last completed step leaves nothing to resume
      Given a plan "alpha"
      And the plan starts strategize
      And steps 1 to 2 complete
      When the total is set to 2
      Then the command is accepted
      And the appended event is "total_steps_set"
      And the resume summary shows:
        | total_steps      | 2   |
        | progress_percent | 100 |

  Rule: a graceful shutdown is recorded once and makes the plan resumable

    Scenario: a shutdown moves a processing plan to queued and marks it interrupted
      Given a plan "alpha" with 4 steps
      And the plan starts strategize as runner "runner-1"
      And steps 1 to 2 complete
      When the plan shuts down
      Then the appended event is "interrupted"
      And the plan is strategize queued
      And the resume summary shows:
        | interrupted            | true     |
        | interruption.reason    | SIGTERM  |
        | interruption.inferred  | false    |
        | interruption.at        | present  |

    Scenario: a shutdown recorded twice is idempotent
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And the plan shuts down
      When the plan shuts down
      Then the command is accepted
      And the shutdown was already recorded
      And no events were appended

    Scenario Outline: a shutdown is refused unless the plan is processing or queued
      Given a plan "alpha" in <phase> <state>
      When the plan shuts down
      Then the command is refused with <error>
      And no events were appended

      Examples:
        | phase      | state       | error        |
        | strategize | complete    | InvalidState |
        | execute    | errored     | InvalidState |
        | apply      | constrained | InvalidState |
        | apply      | applied     | Terminal     |
        | strategize | cancelled   | Terminal     |

  Rule: a dry run shows the resume and writes nothing

    Scenario: a dry run of an interrupted plan writes nothing
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And steps 1 to 2 complete
      And step 3 starts
      And the plan shuts down
      When a dry run of the resume is requested
      Then the command is accepted
      And no events were appended
      And the store's bytes are unchanged
      And the plan is strategize queued
      And the returned summary shows:
        | eligible            | true  |
        | reasons             | []    |
        | next_step           | 3     |
        | uncertain_step      | 3     |
        | last_completed_step | 2     |
        | resume_count        | 0     |

    Scenario: a dry run of an ineligible plan returns its reasons instead of an error
      Given a plan "alpha" in strategize complete
      When a dry run of the resume is requested
      Then the command is accepted
      And no events were appended
      And the store's bytes are unchanged
      And the returned summary shows:
        | eligible | false                 |
        | reasons  | ["nothing_to_resume"] |

  Rule: a resume records where work picks up, and never runs a completed step again

    Scenario: an interrupted plan resumes at the step after its last checkpoint
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And steps 1 to 2 complete
      And the plan shuts down
      When the plan resumes as runner "runner-2"
      Then the appended event is "resumed"
      And the resume point is step 3
      And the plan is strategize processing
      And the returned summary shows:
        | interrupted  | false |
        | resume_count | 1     |
        | next_step    | 3     |

    Scenario: a step that started but never completed is uncertain and runs again
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And steps 1 to 2 complete
      And step 3 starts
      And the plan shuts down
      Then the resume summary shows:
        | uncertain_step | 3 |
        | next_step      | 3 |
      When the plan resumes
      Then the resume point is step 3 and it re-runs the uncertain step
      When step 3 completes
      Then the command is accepted
      And the resume summary shows:
        | uncertain_step      | absent |
        | last_completed_step | 3      |

    Scenario: a runner that died while processing is a crash, and the plan can resume
      Given a plan "alpha" with 4 steps
      And the plan starts strategize as runner "runner-1"
      And steps 1 to 2 complete
      And the runner "runner-1" dies
      Then the plan is eligible to resume
      And the resume summary shows:
        | state                 | processing           |
        | interrupted           | true                 |
        | interruption.reason   | crash                |
        | interruption.inferred | true                 |
        | interruption.at       | 2026-01-01T00:00:02Z |
      When the plan resumes as runner "runner-2"
      Then the resume point is step 3
      And the plan is not eligible to resume because "still_running"

    Scenario: a runner that resumed the plan and then died is a crash too
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And step 1 completes
      And the plan shuts down
      And the plan resumes as runner "runner-2"
      And step 2 completes
      And the runner "runner-2" dies
      Then the plan is eligible to resume
      And the resume summary shows:
        | interruption.reason   | crash                |
        | interruption.at       | 2026-01-01T00:00:05Z |
        | resume_count          | 1                    |
        | next_step             | 3                    |

    Scenario: a resumed plan whose runner holds no lock is still running
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And step 1 completes
      And the plan shuts down
      When the plan resumes
      Then the plan is not eligible to resume because "still_running"

    Scenario: an errored plan resumes where it failed
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And steps 1 to 2 complete
      And the plan fails
      Then the plan is eligible to resume
      When the plan resumes
      Then the resume point is step 3
      And the plan is strategize processing

    Scenario: a constrained plan resumes in apply
      Given a plan "alpha" in apply constrained
      Then the plan is eligible to resume
      When the plan resumes
      Then the resume point is step 1
      And the plan is apply processing

    Scenario: every resume is counted
      Given a plan "alpha" with 5 steps
      And the plan starts strategize
      And step 1 completes
      And the plan shuts down
      And the plan resumes
      And step 2 completes
      And the plan shuts down
      And the plan resumes
      Then the resume summary shows:
        | resume_count | 2     |
        | next_step    | 3     |
        | interrupted  | false |

    Scenario: two runners resuming at the same moment: exactly one wins
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And step 1 completes
      And the plan shuts down
      When two runners resume the plan at the same moment
      Then exactly one resume wins and the other gets a conflict
      And the plan is strategize processing

    Scenario: two resumes decided from the same loaded state: the store takes exactly one
      Given a plan "alpha" with 4 steps
      And the plan starts strategize
      And step 1 completes
      And the plan shuts down
      When two resumes are decided from the same loaded state
      Then exactly one resume wins and the other gets a conflict

    Scenario: resuming a plan that does not exist is refused
      Given we work on plan "ghost"
      When the plan resumes
      Then the command is refused with PlanNotFound

  Rule: progress is completed over total, as a whole percentage

    Scenario Outline: progress is rounded down
      Given a plan "alpha" with <total> steps
      And the plan starts strategize
      And steps 1 to <completed> complete
      Then the resume summary shows:
        | progress_percent | <percent>   |
        | remaining_steps  | <remaining> |

      Examples:
        | total | completed | percent | remaining |
        | 3     | 1         | 33      | 2         |
        | 3     | 2         | 66      | 1         |
        | 4     | 3         | 75      | 1         |
        | 7     | 5         | 71      | 2         |
        | 2     | 2         | 100     | 0         |

    Scenario: progress is absent while the total is unknown
      Given a plan "alpha"
      And the plan starts strategize
      And steps 1 to 2 complete
      Then the resume summary shows:
        | total_steps      | absent |
        | progress_percent | absent |
        | remaining_steps  | absent |
        | next_step        | 3      |

  Rule: a new phase counts its steps afresh; earlier checkpoints stay in history

    Scenario: entering the next phase resets the step count
      Given a plan "alpha" with 2 steps
      And the plan starts strategize
      And steps 1 to 2 complete
      And the plan completes the phase
      When the plan starts execute
      Then the command is accepted
      And the resume summary shows:
        | phase               | execute |
        | last_completed_step | absent  |
        | last_checkpoint_id  | absent  |
        | total_steps         | absent  |
        | next_step           | 1       |
      When step 1 completes
      Then the command is accepted
      And the history reads "plan_created, phase_started, step_completed, step_completed, phase_completed, phase_started, step_completed"

  Rule: listings show every resumable plan, newest activity first

    Scenario: only eligible plans are resumable, newest activity first
      Given a plan "alpha" with 3 steps
      And the plan starts strategize
      And step 1 completes
      And the plan shuts down
      And a plan "bravo" with 3 steps
      And the plan starts strategize as runner "runner-b"
      And a plan "charlie"
      And the plan starts strategize
      And the plan fails
      And a plan "delta"
      And 5 minutes pass
      And we work on plan "alpha"
      And the plan resumes
      And the plan shuts down
      Then the resumable plans are "alpha, charlie"
      And the plans listed are "alpha, delta, charlie, bravo"

    Scenario: the history lists every event in order with a full envelope
      Given a plan "alpha" with 3 steps
      And the plan starts strategize
      And the total is set to 2
      And step 1 starts
      And step 1 completes
      And the plan shuts down
      And the plan resumes
      And step 2 completes
      Then the history reads "plan_created, phase_started, total_steps_set, step_started, step_completed, interrupted, resumed, step_completed"

    Scenario: a plan id that is taken cannot be created again
      Given a plan "alpha"
      When a plan "alpha" is created
      Then the command is refused with AlreadyExists
      And no events were appended
