Feature: Definition drift per step
  A plan definition has a fingerprint per step. A resume is blocked (definition_changed) only when
  a step that already completed changed, was removed or moved. A fix to the step that failed, or
  steps added at the end, do not block; the summary lists them as changed steps. The check reads
  only what every view keeps, so the full and the compact view always agree.
  The clock starts at 2026-01-01T00:00:00Z and every accepted command takes one second.

  Background:
    Given a plan "alpha" with the steps:
      | name   | fingerprint |
      | build  | b1          |
      | test   | c1          |
      | deploy | d1          |
    And the plan starts strategize as runner "runner-1"
    And step 1 "build" completes
    And step 2 "test" starts as attempt 1
    And the plan fails

  Scenario: an unchanged definition resumes with no changed steps
    Then the definition check finds the plan eligible
    And the summary lists the changed steps ""

  Scenario: a completed step whose definition changed blocks the resume and is named
    Given the definition of step 1 "build" changes
    Then the definition check finds the plan not eligible because "definition_changed"
    And the summary lists the changed steps "1 build completed changed"

  Scenario: a fix to the failed step does not block
    Given the definition of step 2 "test" changes
    Then the definition check finds the plan eligible
    And the summary lists the changed steps "2 test pending changed"

  Scenario: a step added at the end does not block
    Given the step "notify" with fingerprint "e1" is added to the definition
    Then the definition check finds the plan eligible
    And the summary lists the changed steps "4 notify pending added"

  Scenario: a completed step that moved blocks the resume
    Given steps 1 and 2 swap places in the definition
    Then the definition check finds the plan not eligible because "definition_changed"
    And the summary lists the changed steps "1 build completed replaced, 2 build pending replaced"

  Scenario: a completed step that was removed blocks the resume
    Given the step "build" is removed from the definition
    Then the definition check finds the plan not eligible because "definition_changed"
    And the summary lists the changed steps "1 build completed replaced, 2 deploy pending replaced, 3 deploy pending removed"
