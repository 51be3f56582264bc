"""Care stages: where a patient is in their care, and which moves between stages make sense.

Plain Python (no Flask, no database) so the rules can be read and tested on their own.

A patient is always in exactly one stage. The allowed moves follow the path a patient with a
neuroendocrine tumour takes through a watchful-waiting programme:

* **assessment**: diagnosed, the care team is deciding on a plan. The decision is either to
  watch (``watchful_waiting``) or to treat (``treatment_planning``). Treatment itself, or a
  trial, is always chosen in treatment planning first, so assessment does not jump to them.
* **watchful_waiting**: active surveillance, visits every 3 to 6 months. It moves to
  ``biopsy_review`` around the one-year biopsy (automatically when its window opens, or by
  hand), to ``treatment_planning`` when a visit shows growth, or ends.
* **biopsy_review**: around the one-year biopsy. A stable result goes back to
  ``watchful_waiting``; progression goes to ``treatment_planning``.
* **treatment_planning**: the team and the patient choose a treatment: medicines that act on
  the whole body (``systemic_treatment``), surgery, radiation or liver-directed therapy
  (``local_treatment``), a ``clinical_trial``, or they decide to keep watching after all
  (``watchful_waiting``).
* **systemic_treatment** and **local_treatment**: either may follow the other directly, as
  combined plans are common (surgery, then a somatostatin analogue; liver-directed therapy
  while the analogue continues). Growth on treatment goes back to ``treatment_planning``;
  when treatment is finished or paused and the disease is quiet, the patient can return to
  ``watchful_waiting``. A trial is never entered from here without a planning decision,
  because it needs eligibility screening and consent.
* **clinical_trial**: when the patient leaves the trial, the team plans again
  (``treatment_planning``) or, if the disease is quiet, goes back to ``watchful_waiting``.
* **surveillance_ended**: care in this programme is over for another reason (moved away,
  chose care elsewhere, died, or no follow-up is needed). Every stage can end this way. A
  patient who comes back is assessed again (``assessment``); nothing else follows.

Staying in the same stage is not a move and is refused, so the history only holds real
changes.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    ASSESSMENT = "assessment"
    WATCHFUL_WAITING = "watchful_waiting"
    BIOPSY_REVIEW = "biopsy_review"
    TREATMENT_PLANNING = "treatment_planning"
    SYSTEMIC_TREATMENT = "systemic_treatment"
    LOCAL_TREATMENT = "local_treatment"
    CLINICAL_TRIAL = "clinical_trial"
    SURVEILLANCE_ENDED = "surveillance_ended"


LABELS: dict[Stage, str] = {
    Stage.ASSESSMENT: "Assessment",
    Stage.WATCHFUL_WAITING: "Watchful waiting",
    Stage.BIOPSY_REVIEW: "Biopsy review",
    Stage.TREATMENT_PLANNING: "Treatment planning",
    Stage.SYSTEMIC_TREATMENT: "Systemic treatment",
    Stage.LOCAL_TREATMENT: "Local treatment",
    Stage.CLINICAL_TRIAL: "Clinical trial",
    Stage.SURVEILLANCE_ENDED: "Surveillance ended",
}

# The stages in which a surveillance plan (visits, biopsy, reminders) runs. Leaving them ends
# the plan: a patient in treatment must not keep getting surveillance reminders.
SURVEILLANCE_STAGES: frozenset[Stage] = frozenset({Stage.WATCHFUL_WAITING, Stage.BIOPSY_REVIEW})

# current stage: the stages it may move to (the module docstring says why). Written as words
# so the table reads like the care path; a misspelt stage fails at import.
_TABLE = {
    "assessment": "watchful_waiting treatment_planning surveillance_ended",
    "watchful_waiting": "biopsy_review treatment_planning surveillance_ended",
    "biopsy_review": "watchful_waiting treatment_planning surveillance_ended",
    "treatment_planning": "systemic_treatment local_treatment clinical_trial watchful_waiting"
    " surveillance_ended",
    "systemic_treatment": "local_treatment treatment_planning watchful_waiting surveillance_ended",
    "local_treatment": "systemic_treatment treatment_planning watchful_waiting surveillance_ended",
    "clinical_trial": "treatment_planning watchful_waiting surveillance_ended",
    "surveillance_ended": "assessment",
}
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage(current): frozenset(Stage(name) for name in targets.split())
    for current, targets in _TABLE.items()
}


class UnknownStage(ValueError):
    """A value that names no stage."""

    def __init__(self, value: object) -> None:
        known = ", ".join(s.value for s in Stage)
        super().__init__(f"Unknown stage {value!r}. Stages are: {known}.")


class TransitionRefused(ValueError):
    """A move the table does not allow; the message names the moves that are allowed."""

    def __init__(self, current: Stage, target: Stage) -> None:
        self.current, self.target = current, target
        if current == target:
            message = f"The patient is already in {LABELS[current]}."
        else:
            message = f"Cannot move from {LABELS[current]} to {LABELS[target]}."
        super().__init__(f"{message} Allowed next stages: {describe(allowed_next(current))}.")


def parse(value: object) -> Stage:
    """The stage named by ``value`` (its key, e.g. ``"watchful_waiting"``)."""
    if isinstance(value, Stage):
        return value
    try:
        return Stage(str(value))
    except ValueError:
        raise UnknownStage(value) from None


def allowed_next(current: Stage | str) -> list[Stage]:
    """The stages ``current`` may move to, in the enum's (care-path) order."""
    allowed = TRANSITIONS[parse(current)]
    return [stage for stage in Stage if stage in allowed]


def is_allowed(current: Stage | str, target: Stage | str) -> bool:
    return parse(target) in TRANSITIONS[parse(current)]


def check_transition(current: Stage | str, target: Stage | str) -> Stage:
    """Return the target stage, or raise ``TransitionRefused`` / ``UnknownStage``."""
    source, destination = parse(current), parse(target)
    if destination not in TRANSITIONS[source]:
        raise TransitionRefused(source, destination)
    return destination


def describe(stages: list[Stage]) -> str:
    """``"Biopsy review (biopsy_review), Treatment planning (treatment_planning)"``."""
    return ", ".join(f"{LABELS[s]} ({s.value})" for s in stages) or "none"


def label(stage: Stage | str) -> str:
    return LABELS[parse(stage)]
