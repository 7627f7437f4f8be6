Feature: Workers and queues
  A plan may be submitted instead of run: the store keeps its definition whole, and the plan
  waits as "queued" until a worker claims it. Workers claim the oldest claimable plan of their
  queue, a plan that no worker holds any more once its lease expired, and never more plans at
  once than the queue's limit. A claim holds the plan by the worker's lease (see leases).
  The clock starts at 2026-01-01T00:00:00Z and every accepted command takes one second; in these
  scenarios it is the store's clock too.

  Scenario: a submitted plan waits as queued until a worker claims it
    Given a plan "alpha" of 2 steps submitted to queue "builds"
    Then the resume summary shows:
      | status | queued |
      | queue  | builds |
      | phase  | action |
    When worker "w1" claims from queue "builds" with a lease of 30 seconds
    Then worker "w1" holds plan "alpha"
    And the resume summary shows:
      | status       | running    |
      | phase        | strategize |
      | lease.runner | w1         |

  Scenario: submitting the same key again changes nothing
    Given a plan "alpha" of 2 steps submitted to queue "builds"
    When plan "alpha" is submitted to queue "builds" again
    Then no events were appended

  Scenario: workers claim the oldest plan first, skip a live lease, and take over an expired one
    Given a plan "alpha" of 2 steps submitted to queue "builds"
    And a plan "beta" of 2 steps submitted to queue "builds"
    And a plan "gamma" of 2 steps submitted to queue "docs"
    When worker "w1" claims from queue "builds" with a lease of 30 seconds
    Then worker "w1" holds plan "alpha"
    When worker "w2" claims from queue "builds" with a lease of 30 seconds
    Then worker "w2" holds plan "beta"
    When worker "w3" claims from queue "builds" with a lease of 30 seconds
    Then worker "w3" claimed nothing
    Given 40 seconds pass
    When worker "w3" claims from queue "builds" with a lease of 30 seconds
    Then worker "w3" holds plan "alpha"
    And the resume summary shows:
      | status       | running |
      | resume_count | 1       |

  Scenario: a queue's limit holds across workers
    Given a plan "alpha" of 2 steps submitted to queue "builds"
    And a plan "beta" of 2 steps submitted to queue "builds"
    And queue "builds" is limited to 1 running plan
    When worker "w1" claims from queue "builds" with a lease of 30 seconds
    Then worker "w1" holds plan "alpha"
    When worker "w2" claims from queue "builds" with a lease of 30 seconds
    Then worker "w2" claimed nothing
