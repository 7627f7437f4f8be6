Feature: One step engine: attempts go on across runs, failures follow one rule, finished keys replay
  Every surface that runs steps (the plan-file runner, the workflow API) runs them through one
  engine. A step's attempts are numbered across runs, so nothing an earlier attempt recorded is
  ever overwritten; every failed attempt is retried while the run's retries last; the last one
  fails the plan, which the next run continues from that step. A workflow whose plan finished
  runs nothing again: each step gives back its recorded output.

  Rule: attempt numbers go on across runs

    Scenario: a step that failed in one run continues with the next attempt number in the next
      When the workflow "agent" runs the steps "fetch, train" where "train" fails on attempts "1, 2" with 1 retry
      Then the workflow failed at step 2
      And the workflow ran "fetch#1, train#1, train#2"
      When the workflow "agent" runs the steps "fetch, train"
      Then the workflow finished
      And the workflow ran "fetch#1, train#1, train#2, train#3"
      And the attempts recorded for step 2 of "agent" are "1, 2, 3"

    Scenario: a failed attempt is retried while retries remain, and the step completes
      When the workflow "flaky" runs the steps "call" where "call" fails on attempt "1" with 2 retries
      Then the workflow finished
      And the workflow ran "call#1, call#2"
      And the attempts recorded for step 1 of "flaky" are "1, 2"

  Rule: a finished key replays

    Scenario: running a finished workflow again runs nothing and writes nothing
      When the workflow "report" runs the steps "fetch, render"
      Then the workflow finished
      When the workflow "report" runs the steps "fetch, render"
      Then the workflow finished
      And the workflow ran "fetch#1, render#1"
      And the last workflow run appended no events
