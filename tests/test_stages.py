"""The care-stage table (pure: no app, no database)."""

from __future__ import annotations

import itertools

import pytest

from surveillance import stages
from surveillance.stages import Stage, TransitionRefused, UnknownStage

S = Stage

# Every move the clinic considers sensible, written out independently of the module's table.
ALLOWED = {
    (S.ASSESSMENT, S.WATCHFUL_WAITING),
    (S.ASSESSMENT, S.TREATMENT_PLANNING),
    (S.ASSESSMENT, S.SURVEILLANCE_ENDED),
    (S.WATCHFUL_WAITING, S.BIOPSY_REVIEW),
    (S.WATCHFUL_WAITING, S.TREATMENT_PLANNING),
    (S.WATCHFUL_WAITING, S.SURVEILLANCE_ENDED),
    (S.BIOPSY_REVIEW, S.WATCHFUL_WAITING),
    (S.BIOPSY_REVIEW, S.TREATMENT_PLANNING),
    (S.BIOPSY_REVIEW, S.SURVEILLANCE_ENDED),
    (S.TREATMENT_PLANNING, S.SYSTEMIC_TREATMENT),
    (S.TREATMENT_PLANNING, S.LOCAL_TREATMENT),
    (S.TREATMENT_PLANNING, S.CLINICAL_TRIAL),
    (S.TREATMENT_PLANNING, S.WATCHFUL_WAITING),
    (S.TREATMENT_PLANNING, S.SURVEILLANCE_ENDED),
    (S.SYSTEMIC_TREATMENT, S.LOCAL_TREATMENT),
    (S.SYSTEMIC_TREATMENT, S.TREATMENT_PLANNING),
    (S.SYSTEMIC_TREATMENT, S.WATCHFUL_WAITING),
    (S.SYSTEMIC_TREATMENT, S.SURVEILLANCE_ENDED),
    (S.LOCAL_TREATMENT, S.SYSTEMIC_TREATMENT),
    (S.LOCAL_TREATMENT, S.TREATMENT_PLANNING),
    (S.LOCAL_TREATMENT, S.WATCHFUL_WAITING),
    (S.LOCAL_TREATMENT, S.SURVEILLANCE_ENDED),
    (S.CLINICAL_TRIAL, S.TREATMENT_PLANNING),
    (S.CLINICAL_TRIAL, S.WATCHFUL_WAITING),
    (S.CLINICAL_TRIAL, S.SURVEILLANCE_ENDED),
    (S.SURVEILLANCE_ENDED, S.ASSESSMENT),
}
ALL_PAIRS = list(itertools.product(Stage, Stage))


def test_the_stage_keys_are_exactly_these() -> None:
    assert [s.value for s in Stage] == [
        "assessment",
        "watchful_waiting",
        "biopsy_review",
        "treatment_planning",
        "systemic_treatment",
        "local_treatment",
        "clinical_trial",
        "surveillance_ended",
    ]
    assert set(stages.LABELS) == set(Stage)
    assert set(stages.TRANSITIONS) == set(Stage)


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_moves(current: Stage, target: Stage) -> None:
    assert stages.is_allowed(current, target)
    assert stages.check_transition(current.value, target.value) is target


@pytest.mark.parametrize(("current", "target"), [pair for pair in ALL_PAIRS if pair not in ALLOWED])
def test_refused_moves_name_the_allowed_next_stages(current: Stage, target: Stage) -> None:
    assert not stages.is_allowed(current, target)
    with pytest.raises(TransitionRefused) as refused:
        stages.check_transition(current, target)
    message = str(refused.value)
    allowed = [t for (c, t) in ALLOWED if c == current]
    assert allowed, "every stage has a way out"
    for name in allowed:
        assert f"{stages.LABELS[name]} ({name.value})" in message
    for name in set(Stage) - set(allowed):
        assert f"({name.value})" not in message
    if current == target:
        assert message.startswith(f"The patient is already in {stages.LABELS[current]}.")
    else:
        assert message.startswith(
            f"Cannot move from {stages.LABELS[current]} to {stages.LABELS[target]}."
        )


def test_worked_example_of_a_refusal_message() -> None:
    with pytest.raises(TransitionRefused) as refused:
        stages.check_transition("assessment", "clinical_trial")
    assert str(refused.value) == (
        "Cannot move from Assessment to Clinical trial. Allowed next stages: "
        "Watchful waiting (watchful_waiting), Treatment planning (treatment_planning), "
        "Surveillance ended (surveillance_ended)."
    )


def test_unknown_stage_lists_the_stages() -> None:
    with pytest.raises(UnknownStage) as unknown:
        stages.parse("cured")
    assert "'cured'" in str(unknown.value)
    assert "watchful_waiting" in str(unknown.value)


def test_every_stage_is_reachable_from_assessment_and_can_end() -> None:
    reached, frontier = {S.ASSESSMENT}, [S.ASSESSMENT]
    while frontier:
        for target in stages.allowed_next(frontier.pop()):
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(Stage)
    assert all(
        S.SURVEILLANCE_ENDED in stages.TRANSITIONS[s] for s in Stage if s != S.SURVEILLANCE_ENDED
    )


def test_allowed_next_keeps_care_path_order() -> None:
    assert stages.allowed_next("treatment_planning") == [
        S.WATCHFUL_WAITING,
        S.SYSTEMIC_TREATMENT,
        S.LOCAL_TREATMENT,
        S.CLINICAL_TRIAL,
        S.SURVEILLANCE_ENDED,
    ]
