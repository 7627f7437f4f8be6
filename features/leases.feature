Feature: Leases for runners that hold no run lock
  A runner that cannot hold the plan's run lock for its whole run (an orchestrator calling the
  CLI command by command, a worker on another machine) holds the plan by lease instead: starting
  a phase, resuming or starting a step names the runner and how long the lease lasts, and a
  heartbeat renews it. While the lease is live the plan is running; once it expired without a
  heartbeat the plan is crashed, its interruption inferred as "lease_expired", and another runner
  may resume it and take it over. The runner that lost it cannot renew it or start a step under
  it any more. Expiry is judged by the store's clock, never the caller's.
  The clock starts at 2026-01-01T00:00:00Z and every accepted command takes one second; in these
  scenarios it is the store's clock too.

  Rule: a live lease means a runner is working; an expired one means it is gone

    Scenario: a plan whose lease expired without a heartbeat is crashed, and another runner resumes it
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-a" with a lease of 30 seconds
      And step 1 completes
      Then the plan is not eligible to resume because "still_running"
      And the resume summary shows:
        | status           | running              |
        | interrupted      | false                |
        | lease.runner     | runner-a             |
        | lease.expires_at | 2026-01-01T00:00:31Z |
      Given 40 seconds pass
      Then the plan is eligible to resume
      And the resume summary shows:
        | state                 | processing           |
        | status                | crashed              |
        | interrupted           | true                 |
        | interruption.reason   | lease_expired        |
        | interruption.inferred | true                 |
        | interruption.at       | 2026-01-01T00:00:31Z |
      When the plan resumes as runner "runner-b" with a lease of 30 seconds
      Then the command is accepted
      And the appended event is "resumed"
      And the resume point is step 2
      And the plan is not eligible to resume because "still_running"
      And the resume summary shows:
        | status           | running              |
        | lease.runner     | runner-b             |
        | lease.expires_at | 2026-01-01T00:01:13Z |

    Scenario: another runner cannot take the plan over while the lease is live
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-a" with a lease of 30 seconds
      And 20 seconds pass
      When the plan resumes as runner "runner-b" with a lease of 30 seconds
      Then the command is refused with NotEligible
      And the refusal lists the reasons "still_running"
      And no events were appended

    Scenario: a heartbeat renews the lease, so the plan stays running past its first expiry
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-a" with a lease of 30 seconds
      And 20 seconds pass
      When runner "runner-a" sends a heartbeat for 30 seconds
      Then the command is accepted
      And the appended event is "lease_renewed"
      Given 20 seconds pass
      Then the plan is not eligible to resume because "still_running"
      And the resume summary shows:
        | status           | running              |
        | lease.expires_at | 2026-01-01T00:00:52Z |
      Given 20 seconds pass
      Then the plan is eligible to resume
      And the resume summary shows:
        | status              | crashed              |
        | interruption.reason | lease_expired        |
        | interruption.at     | 2026-01-01T00:00:52Z |

    Scenario: a step started under the lease renews it too
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-a" with a lease of 30 seconds
      And 20 seconds pass
      When step 1 starts under runner "runner-a"'s lease for 30 seconds
      Then the command is accepted
      And the appended event is "step_started"
      Given 20 seconds pass
      Then the plan is not eligible to resume because "still_running"

  Rule: a runner whose plan was taken over is fenced

    Scenario: the old runner can neither renew the lease nor start a step once another runner took over
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-a" with a lease of 30 seconds
      And step 1 starts under runner "runner-a"'s lease for 30 seconds
      And 40 seconds pass
      And the plan resumes as runner "runner-b" with a lease of 30 seconds
      When runner "runner-a" sends a heartbeat for 30 seconds
      Then the command is refused with LeaseLost
      And the error code is "lease_lost"
      And the error message is "plan alpha: runner runner-a does not hold the plan's lease (runner runner-b holds it now); stop working on the plan and start no further step (resume it to take it over again)"
      And no events were appended
      When step 1 starts under runner "runner-a"'s lease for 30 seconds
      Then the command is refused with LeaseLost
      And no events were appended
      When runner "runner-b" sends a heartbeat for 30 seconds
      Then the command is accepted
      And the resume summary shows:
        | lease.runner | runner-b |

    Scenario: a runner whose lease expired but whom nobody replaced renews it and carries on
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-a" with a lease of 30 seconds
      And 40 seconds pass
      When runner "runner-a" sends a heartbeat for 30 seconds
      Then the command is accepted
      And the plan is not eligible to resume because "still_running"

  Rule: leaving processing ends the lease

    Scenario Outline: a plan that <move> holds no lease any more
      Given a plan "alpha" with 3 steps
      And the plan starts strategize as runner "runner-a" with a lease of 30 seconds
      And the plan <move>
      Then the resume summary shows:
        | lease | absent |
      When runner "runner-a" sends a heartbeat for 30 seconds
      Then the command is refused with LeaseLost
      And no events were appended

      Examples:
        | move                |
        | shuts down          |
        | fails               |
        | completes the phase |
        | is cancelled        |

  Rule: without a lease, the old rules hold

    Scenario: a lockless worker that started without a lease is still running until it records its interruption
      Given a plan "alpha" with 3 steps
      And the plan starts strategize
      And step 1 completes
      And 60 minutes pass
      Then the plan is not eligible to resume because "still_running"
      And the resume summary shows:
        | status       | running |
        | interruption | absent  |
        | lease        | absent  |
      When runner "runner-a" sends a heartbeat for 30 seconds
      Then the command is refused with LeaseLost
      When step 2 starts under runner "runner-a"'s lease for 30 seconds
      Then the command is refused with LeaseLost
      When the plan shuts down
      Then the plan is eligible to resume
