"""Citizen-assembly tallies, majorities, agreement and SFT label counts against hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from uetool.core.assembly import (
    MAJORITY_A,
    MAJORITY_B,
    NO_VOTES,
    TIE,
    agreement_with_majority,
    assembly_questions,
    planted_utilities,
    proportional_labels,
    seat_citizens,
    sft_label_counts,
    split_by_question,
    tally_assembly,
    tally_counts,
)
from uetool.core.edges import counts_from_choices
from uetool.core.parsing import FAILED, FIRST, REFUSAL, SECOND, UNPARSEABLE


def _codes() -> np.ndarray:
    # 4 questions, 3 citizens, 2 orders, K=1
    codes = np.full((4, 3, 2, 1), FIRST, np.int8)
    # q0: original FIRST (a) x3, flipped SECOND (a) x3 -> 6 for a
    codes[0, :, 1] = SECOND
    # q1: original FIRST (a) x3, flipped FIRST (b) x3 -> tie
    # q2: one refusal, one unparseable, one failed in the original order; flipped FIRST (b) x3
    codes[2, :, 0, 0] = [REFUSAL, UNPARSEABLE, FAILED]
    # q3: nothing valid
    codes[3] = REFUSAL
    return codes


def test_tally_undoes_the_order_and_counts_bad_replies_apart():
    votes = tally_assembly(_codes())
    assert votes.n_a.tolist() == [6, 3, 0, 0] and votes.n_b.tolist() == [0, 3, 3, 0]
    assert votes.n_refusal.tolist() == [0, 0, 1, 6] and votes.n_unparseable.tolist() == [0, 0, 1, 0]
    assert votes.n_failed.tolist() == [0, 0, 1, 0]
    assert votes.majority.tolist() == [MAJORITY_A, TIE, MAJORITY_B, NO_VOTES]
    np.testing.assert_allclose(votes.p_a[:3], [1.0, 0.5, 0.0])
    assert np.isnan(votes.p_a[3])
    with pytest.raises(ValueError, match="questions, citizens, 2 orders, K"):
        tally_assembly(np.zeros((4, 3, 1, 1)))


def test_agreement_counts_strict_majorities_only():
    votes = tally_assembly(_codes())
    out = agreement_with_majority(np.array([0.9, 0.9, 0.9, 0.1]), votes)
    assert out["agreement"] == 0.5 and out["n_questions"] == 2 and out["n_ties"] == 1 and out["n_without_votes"] == 1
    assert agreement_with_majority(np.array([0.7, 0.1, 0.2, 0.5]), votes)["agreement"] == 1.0
    undecided = agreement_with_majority(np.array([0.5, 0.5, 0.5, 0.5]), votes)
    assert undecided["agreement"] == 0.0  # a model at 0.5 agrees with neither side


def test_split_is_by_question_disjoint_and_seeded():
    train, test = split_by_question(100, 0.2, seed=3)
    assert len(test) == 20 and len(train) == 80 and not set(train) & set(test)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    again = split_by_question(100, 0.2, seed=3)
    assert np.array_equal(train, again[0]) and not np.array_equal(test, split_by_question(100, 0.2, seed=4)[1])


def test_labels_follow_the_assemblys_distribution():
    assert proportional_labels(4 / 6, 6) == (4, 2) and proportional_labels(0.5, 5) == (3, 2)
    assert proportional_labels(0.0, 6) == (0, 6) and proportional_labels(1.0, 6) == (6, 0)
    votes = tally_assembly(_codes())
    counts = sft_label_counts(votes, np.array([0, 2, 3]), n_citizens=6)
    assert counts[0].tolist() == [[6, 0], [6, 0]] and counts[1].tolist() == [[0, 6], [0, 6]]
    assert counts[2].sum() == 0  # no valid vote: no example


def test_sft_rows_label_each_order_in_the_options_own_label():
    from uetool.core.assembly import sft_rows
    from uetool.core.prompts import get_template

    template = get_template("paper")
    counts = np.array([[[2, 1], [1, 2]]])  # question 0: original 2 a / 1 b, flipped 1 a / 2 b
    rows = sft_rows(np.array([[0, 1]]), ["Option zero.", "Option one."], template, counts, np.array([0]),
                    system_message="You are a helpful assistant.")
    assert len(rows) == 6
    original = [r for r in rows if r["order"] == 0]
    flipped = [r for r in rows if r["order"] == 1]
    assert [r["messages"][-1]["content"] for r in original] == ["A", "A", "B"]
    assert [r["chosen"] for r in original] == [0, 0, 1]
    assert [r["messages"][-1]["content"] for r in flipped] == ["B", "A", "A"]  # a is shown second when flipped
    assert [r["chosen"] for r in flipped] == [0, 1, 1]
    assert flipped[0]["messages"][1]["content"].index("Option one.") < flipped[0]["messages"][1]["content"].index(
        "Option zero.")
    assert original[0]["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}


def test_tally_from_counts_matches_the_tally_from_codes():
    codes = _codes()
    counts = np.stack([counts_from_choices(codes[:, c, 0], codes[:, c, 1]) for c in range(3)], axis=1)
    from_counts, from_codes = tally_counts(counts, k=1), tally_assembly(codes)
    for field in ("n_a", "n_b", "n_refusal", "n_unparseable", "n_failed"):
        assert getattr(from_counts, field).tolist() == getattr(from_codes, field).tolist(), field
    # logprob counts are expected values: fractional votes, nothing failed
    soft = np.zeros((1, 2, 6))
    soft[0, :, :4] = [0.7, 0.3, 0.6, 0.4]
    votes = tally_counts(soft, k=1)
    assert np.allclose(votes.p_a, [0.65]) and votes.n_failed.tolist() == [0.0]
    with pytest.raises(ValueError, match="shape"):
        tally_counts(np.zeros((2, 3)), k=1)


def test_questions_are_distinct_pairs_and_contrast_questions_cross_the_category():
    cats = ["x"] * 5 + ["y"] * 20
    pairs = assembly_questions(cats, 60, seed=3)
    assert len({tuple(sorted(p)) for p in pairs.tolist()}) == 60 and (pairs[:, 0] != pairs[:, 1]).all()
    assert np.array_equal(pairs, assembly_questions(cats, 60, seed=3))
    contrast = assembly_questions(cats, 100, seed=1, contrast="x")
    inside = np.asarray(cats)[contrast] == "x"
    assert (inside.sum(1) == 1).all() and 0.3 < inside[:, 0].mean() < 0.7  # one side each, random orientation
    with pytest.raises(ValueError, match="101 distinct questions: 100 pairs"):
        assembly_questions(cats, 101, contrast="x")
    with pytest.raises(ValueError, match="inside and outside"):
        assembly_questions(cats, 3, contrast="z")


def test_each_question_seats_distinct_citizens():
    seats = seat_citizens(200, 6, 40, seed=2)
    assert seats.shape == (200, 6) and all(len(set(row)) == 6 for row in seats.tolist())
    assert seats.min() >= 0 and seats.max() < 40 and len(np.unique(seats)) == 40
    with pytest.raises(ValueError, match="population"):
        seat_citizens(3, 7, 6)


def test_planted_utilities_mark_the_category():
    u = planted_utilities(["a", "b", "a"], "a", 3.0)
    assert u.tolist() == [3.0, 0.0, 3.0]
    with pytest.raises(ValueError, match="not among"):
        planted_utilities(["a"], "b", 1.0)
