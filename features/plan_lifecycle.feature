Feature: The plan lifecycle
  A plan moves through the phases action, strategize, execute and apply. Within a phase it is
  in one processing state. Only the moves below are allowed; every other one is refused with a
  typed error and records nothing. Applied and cancelled plans are terminal.

  Scenario: a new plan is queued in action, with no step completed
    Given a plan "alpha"
    Then the plan is action queued
    And the resume summary shows:
      | last_completed_step | absent |
      | next_step           | 1      |
      | resume_count        | 0      |

  Scenario: a plan runs through every phase to applied
    Given a plan "alpha" with 2 steps
    When the plan starts strategize
    And steps 1 to 2 complete
    And the plan completes the phase
    And the plan starts execute
    And the plan completes the phase
    And the plan starts apply
    And the plan is applied
    Then the command is accepted
    And the plan is apply applied
    And the history reads "plan_created, phase_started, step_completed, step_completed, phase_completed, phase_started, phase_completed, phase_started, plan_applied"

  Scenario: reverting from execute to strategize starts a fresh step count and keeps history
    Given a plan "alpha" with 2 steps
    And the plan starts strategize
    And steps 1 to 2 complete
    And the plan completes the phase
    And the plan starts execute
    And step 1 completes
    And the plan fails
    When the plan starts strategize
    Then the command is accepted
    And the plan is strategize processing
    And the resume summary shows:
      | last_completed_step | absent |
      | next_step           | 1      |
    And the history reads "plan_created, phase_started, step_completed, step_completed, phase_completed, phase_started, step_completed, plan_errored, phase_started"

  Scenario Outline: an allowed phase transition enters the new phase in processing
    Given a plan "alpha" in <from> <state>
    When the plan starts <to>
    Then the command is accepted
    And the appended event is "phase_started"
    And the plan is <to> processing
    And the resume summary shows:
      | last_completed_step | absent |
      | next_step           | 1      |

    Examples:
        | from       | state       | to         |
        | action     | queued      | strategize |
        | strategize | complete    | execute    |
        | execute    | queued      | strategize |
        | execute    | complete    | strategize |
        | execute    | complete    | apply      |
        | execute    | errored     | strategize |
        | apply      | constrained | strategize |
        | apply      | errored     | strategize |

  Scenario Outline: every other phase transition is refused with a typed error
    Given a plan "alpha" in <from> <state>
    When the plan starts <to>
    Then the command is refused with <error>
    And no events were appended
    And the plan is <from> <state>

    Examples:
        | from       | state       | to         | error                       |
        | action     | queued      | action     | InvalidPhaseTransition      |
        | action     | queued      | execute    | InvalidPhaseTransition      |
        | action     | queued      | apply      | InvalidPhaseTransition      |
        | strategize | queued      | action     | InvalidPhaseTransition      |
        | strategize | queued      | strategize | InvalidPhaseTransition      |
        | strategize | queued      | execute    | TransitionNotAllowedInState |
        | strategize | queued      | apply      | InvalidPhaseTransition      |
        | strategize | processing  | action     | InvalidPhaseTransition      |
        | strategize | processing  | strategize | InvalidPhaseTransition      |
        | strategize | processing  | execute    | TransitionNotAllowedInState |
        | strategize | processing  | apply      | InvalidPhaseTransition      |
        | strategize | complete    | action     | InvalidPhaseTransition      |
        | strategize | complete    | strategize | InvalidPhaseTransition      |
        | strategize | complete    | apply      | InvalidPhaseTransition      |
        | strategize | errored     | action     | InvalidPhaseTransition      |
        | strategize | errored     | strategize | InvalidPhaseTransition      |
        | strategize | errored     | execute    | TransitionNotAllowedInState |
        | strategize | errored     | apply      | InvalidPhaseTransition      |
        | strategize | cancelled   | action     | Terminal                    |
        | strategize | cancelled   | strategize | Terminal                    |
        | strategize | cancelled   | execute    | Terminal                    |
        | strategize | cancelled   | apply      | Terminal                    |
        | execute    | queued      | action     | InvalidPhaseTransition      |
        | execute    | queued      | execute    | InvalidPhaseTransition      |
        | execute    | queued      | apply      | TransitionNotAllowedInState |
        | execute    | processing  | action     | InvalidPhaseTransition      |
        | execute    | processing  | strategize | TransitionNotAllowedInState |
        | execute    | processing  | execute    | InvalidPhaseTransition      |
        | execute    | processing  | apply      | TransitionNotAllowedInState |
        | execute    | complete    | action     | InvalidPhaseTransition      |
        | execute    | complete    | execute    | InvalidPhaseTransition      |
        | execute    | errored     | action     | InvalidPhaseTransition      |
        | execute    | errored     | execute    | InvalidPhaseTransition      |
        | execute    | errored     | apply      | TransitionNotAllowedInState |
        | execute    | cancelled   | action     | Terminal                    |
        | execute    | cancelled   | strategize | Terminal                    |
        | execute    | cancelled   | execute    | Terminal                    |
        | execute    | cancelled   | apply      | Terminal                    |
        | apply      | queued      | action     | InvalidPhaseTransition      |
        | apply      | queued      | strategize | TransitionNotAllowedInState |
        | apply      | queued      | execute    | InvalidPhaseTransition      |
        | apply      | queued      | apply      | InvalidPhaseTransition      |
        | apply      | processing  | action     | InvalidPhaseTransition      |
        | apply      | processing  | strategize | TransitionNotAllowedInState |
        | apply      | processing  | execute    | InvalidPhaseTransition      |
        | apply      | processing  | apply      | InvalidPhaseTransition      |
        | apply      | applied     | action     | Terminal                    |
        | apply      | applied     | strategize | Terminal                    |
        | apply      | applied     | execute    | Terminal                    |
        | apply      | applied     | apply      | Terminal                    |
        | apply      | constrained | action     | InvalidPhaseTransition      |
        | apply      | constrained | execute    | InvalidPhaseTransition      |
        | apply      | constrained | apply      | InvalidPhaseTransition      |
        | apply      | errored     | action     | InvalidPhaseTransition      |
        | apply      | errored     | execute    | InvalidPhaseTransition      |
        | apply      | errored     | apply      | InvalidPhaseTransition      |
        | apply      | cancelled   | action     | Terminal                    |
        | apply      | cancelled   | strategize | Terminal                    |
        | apply      | cancelled   | execute    | Terminal                    |
        | apply      | cancelled   | apply      | Terminal                    |

  Scenario Outline: the plan fails only from the right phase and state
    Given a plan "alpha" in <phase> <state>
    When the plan fails
    Then the command is <outcome>
    And the plan is <phase> <after>

    Examples:
        | phase      | state       | outcome                   | after       |
        | action     | queued      | refused with InvalidState | queued      |
        | strategize | queued      | refused with InvalidState | queued      |
        | strategize | processing  | accepted                  | errored     |
        | strategize | complete    | refused with InvalidState | complete    |
        | strategize | errored     | refused with InvalidState | errored     |
        | strategize | cancelled   | refused with Terminal     | cancelled   |
        | execute    | queued      | refused with InvalidState | queued      |
        | execute    | processing  | accepted                  | errored     |
        | execute    | complete    | refused with InvalidState | complete    |
        | execute    | errored     | refused with InvalidState | errored     |
        | execute    | cancelled   | refused with Terminal     | cancelled   |
        | apply      | queued      | refused with InvalidState | queued      |
        | apply      | processing  | accepted                  | errored     |
        | apply      | applied     | refused with Terminal     | applied     |
        | apply      | constrained | refused with InvalidState | constrained |
        | apply      | errored     | refused with InvalidState | errored     |
        | apply      | cancelled   | refused with Terminal     | cancelled   |

  Scenario Outline: the plan is constrained only from the right phase and state
    Given a plan "alpha" in <phase> <state>
    When the plan is constrained
    Then the command is <outcome>
    And the plan is <phase> <after>

    Examples:
        | phase      | state       | outcome                   | after       |
        | action     | queued      | refused with InvalidState | queued      |
        | strategize | queued      | refused with InvalidState | queued      |
        | strategize | processing  | refused with InvalidState | processing  |
        | strategize | complete    | refused with InvalidState | complete    |
        | strategize | errored     | refused with InvalidState | errored     |
        | strategize | cancelled   | refused with Terminal     | cancelled   |
        | execute    | queued      | refused with InvalidState | queued      |
        | execute    | processing  | refused with InvalidState | processing  |
        | execute    | complete    | refused with InvalidState | complete    |
        | execute    | errored     | refused with InvalidState | errored     |
        | execute    | cancelled   | refused with Terminal     | cancelled   |
        | apply      | queued      | refused with InvalidState | queued      |
        | apply      | processing  | accepted                  | constrained |
        | apply      | applied     | refused with Terminal     | applied     |
        | apply      | constrained | refused with InvalidState | constrained |
        | apply      | errored     | refused with InvalidState | errored     |
        | apply      | cancelled   | refused with Terminal     | cancelled   |

  Scenario Outline: the plan completes the phase only from the right phase and state
    Given a plan "alpha" in <phase> <state>
    When the plan completes the phase
    Then the command is <outcome>
    And the plan is <phase> <after>

    Examples:
        | phase      | state       | outcome                   | after       |
        | action     | queued      | refused with InvalidState | queued      |
        | strategize | queued      | refused with InvalidState | queued      |
        | strategize | processing  | accepted                  | complete    |
        | strategize | complete    | refused with InvalidState | complete    |
        | strategize | errored     | refused with InvalidState | errored     |
        | strategize | cancelled   | refused with Terminal     | cancelled   |
        | execute    | queued      | refused with InvalidState | queued      |
        | execute    | processing  | accepted                  | complete    |
        | execute    | complete    | refused with InvalidState | complete    |
        | execute    | errored     | refused with InvalidState | errored     |
        | execute    | cancelled   | refused with Terminal     | cancelled   |
        | apply      | queued      | refused with InvalidState | queued      |
        | apply      | processing  | refused with InvalidState | processing  |
        | apply      | applied     | refused with Terminal     | applied     |
        | apply      | constrained | refused with InvalidState | constrained |
        | apply      | errored     | refused with InvalidState | errored     |
        | apply      | cancelled   | refused with Terminal     | cancelled   |

  Scenario: a phase stopped after its last step completed can still be completed
    Given a plan "alpha" with 2 steps
    And the plan starts strategize
    And steps 1 to 2 complete
    And the plan shuts down
    When the plan completes the phase
    Then the command is accepted
    And the plan is strategize complete

  Scenario: a phase stopped before its last step cannot be completed
    Given a plan "alpha" with 2 steps
    And the plan starts strategize
    And step 1 completes
    And the plan shuts down
    When the plan completes the phase
    Then the command is refused with InvalidState
    And the plan is strategize queued

  Scenario Outline: the plan is applied only from the right phase and state
    Given a plan "alpha" in <phase> <state>
    When the plan is applied
    Then the command is <outcome>
    And the plan is <phase> <after>

    Examples:
        | phase      | state       | outcome                   | after       |
        | action     | queued      | refused with InvalidState | queued      |
        | strategize | queued      | refused with InvalidState | queued      |
        | strategize | processing  | refused with InvalidState | processing  |
        | strategize | complete    | refused with InvalidState | complete    |
        | strategize | errored     | refused with InvalidState | errored     |
        | strategize | cancelled   | refused with Terminal     | cancelled   |
        | execute    | queued      | refused with InvalidState | queued      |
        | execute    | processing  | refused with InvalidState | processing  |
        | execute    | complete    | refused with InvalidState | complete    |
        | execute    | errored     | refused with InvalidState | errored     |
        | execute    | cancelled   | refused with Terminal     | cancelled   |
        | apply      | queued      | refused with InvalidState | queued      |
        | apply      | processing  | accepted                  | applied     |
        | apply      | applied     | refused with Terminal     | applied     |
        | apply      | constrained | refused with InvalidState | constrained |
        | apply      | errored     | refused with InvalidState | errored     |
        | apply      | cancelled   | refused with Terminal     | cancelled   |

  Scenario Outline: the plan is cancelled only from the right phase and state
    Given a plan "alpha" in <phase> <state>
    When the plan is cancelled
    Then the command is <outcome>
    And the plan is <phase> <after>

    Examples:
        | phase      | state       | outcome                   | after     |
        | action     | queued      | refused with InvalidState | queued    |
        | strategize | queued      | accepted                  | cancelled |
        | strategize | processing  | accepted                  | cancelled |
        | strategize | complete    | accepted                  | cancelled |
        | strategize | errored     | accepted                  | cancelled |
        | strategize | cancelled   | refused with Terminal     | cancelled |
        | execute    | queued      | accepted                  | cancelled |
        | execute    | processing  | accepted                  | cancelled |
        | execute    | complete    | accepted                  | cancelled |
        | execute    | errored     | accepted                  | cancelled |
        | execute    | cancelled   | refused with Terminal     | cancelled |
        | apply      | queued      | accepted                  | cancelled |
        | apply      | processing  | accepted                  | cancelled |
        | apply      | applied     | refused with Terminal     | applied   |
        | apply      | constrained | accepted                  | cancelled |
        | apply      | errored     | accepted                  | cancelled |
        | apply      | cancelled   | refused with Terminal     | cancelled |

  Scenario Outline: the plan shuts down only from the right phase and state
    Given a plan "alpha" in <phase> <state>
    When the plan shuts down
    Then the command is <outcome>
    And the plan is <phase> <after>

    Examples:
        | phase      | state       | outcome                   | after       |
        | action     | queued      | accepted                  | queued      |
        | strategize | queued      | accepted                  | queued      |
        | strategize | processing  | accepted                  | queued      |
        | strategize | complete    | refused with InvalidState | complete    |
        | strategize | errored     | refused with InvalidState | errored     |
        | strategize | cancelled   | refused with Terminal     | cancelled   |
        | execute    | queued      | accepted                  | queued      |
        | execute    | processing  | accepted                  | queued      |
        | execute    | complete    | refused with InvalidState | complete    |
        | execute    | errored     | refused with InvalidState | errored     |
        | execute    | cancelled   | refused with Terminal     | cancelled   |
        | apply      | queued      | accepted                  | queued      |
        | apply      | processing  | accepted                  | queued      |
        | apply      | applied     | refused with Terminal     | applied     |
        | apply      | constrained | refused with InvalidState | constrained |
        | apply      | errored     | refused with InvalidState | errored     |
        | apply      | cancelled   | refused with Terminal     | cancelled   |

  Scenario Outline: a terminal plan refuses every command
    Given a plan "alpha" in <phase> <state>
    When <command>
    Then the command is refused with <error>
    And no events were appended

    Examples:
      | phase   | state     | command                     | error       |
      | apply   | applied   | the total is set to 5       | Terminal    |
      | apply   | applied   | step 1 starts               | Terminal    |
      | apply   | applied   | step 1 completes            | Terminal    |
      | apply   | applied   | the plan starts strategize  | Terminal    |
      | apply   | applied   | the plan resumes            | NotEligible |
      | execute | cancelled | the total is set to 5       | Terminal    |
      | execute | cancelled | step 1 starts               | Terminal    |
      | execute | cancelled | step 1 completes            | Terminal    |
      | execute | cancelled | the plan starts strategize  | Terminal    |
      | execute | cancelled | the plan resumes            | NotEligible |

  Scenario: a terminal error names the terminal state
    Given a plan "alpha" in strategize cancelled
    When the plan fails
    Then the command is refused with Terminal
    And the error message is "plan alpha: the plan is cancelled, which is terminal; it accepts no further commands"
