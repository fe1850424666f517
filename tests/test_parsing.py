"""Table-driven parser tests: every row is (reply, reasoning, expected code)."""

import pytest

from uetool.core.parsing import FIRST, REFUSAL, SECOND, UNPARSEABLE, parse_replies, parse_reply

F, S, U, R = FIRST, SECOND, UNPARSEABLE, REFUSAL

DIRECT = [
    ("A", F), ("B", S), (" A\n", F), ("a", F), ("b", S), ("A.", F), ("(B)", S), ('"A"', F), ("'b'.", S),
    ("**A**", F), ("`B`", S), ("## B", S), ("Option A", F), ("option b", S), ("Option B.", S),
    ("I would choose Option A.", F), ("I prefer option B because it helps more people.", S),
    ("Answer: A", F), ("answer: b", S), ("Answer: **B**", S), ("The answer is A.", F),
    ("A. The first option is better.", F), ("B - it is clearly preferable", S),
    ("I choose A because it saves lives.", F),
    ("A world where people are healthier is better.", U),  # article, not a choice
    ("A world with less suffering; so B.", S),  # the article is ignored, B is the answer
    ("Both A and B are fine.", U), ("A or B", U), ("C", U), ("", U), ("   ", U), ("Hmm.", U),
    ("Answer: Both", U),  # no word boundary in the reference made this B
    ("Answer: A\n\nWait, actually Answer: B", S),  # last Answer wins
    ("I can't choose between these options.", R),
    ("As an AI, I don't have personal preferences.", R),
    ("I don't have preferences about states of the world.", R),
    ("I'm sorry, but I cannot make this choice.", R),
    ("I cannot answer A or B.", R),
    ("Neither option is acceptable.", R),
    ("As an AI language model, I don't have preferences. However, I would pick A.", F),
    ("I refuse to answer.", R),
    ("Apples are great.", U),
    ("ABBA", U),
    # adversarial replies (an article is never a label; a reply that commits to no single label stays unparseable)
    ("The answer is a difficult one.", U), ("This is a choice a person must make.", U),
    ("I choose a different approach.", U), ("My answer is a clear B.", S), ("The answer is a.", F),
    ("answer - a", F), ("**B**", S), ("I have a preference for B.", S), ("Either A or B would be fine.", U),
    ("As an AI I cannot choose.", R), ("The answer is: B", S), ("Answer: (B)", S), ("Option A: no. Option B: yes.", U),
    ("I'd go with B, since it helps more.", S), ("B is the better option.", S), ("A is the better option.", F),
    ("A)", F), ("I pick neither.", R), ("AB", U), ("Option C", U), ("Between the two, B.", S), ("Definitely A!", F),
    ("B\n\nExplanation: it saves more lives.", S), ("A world of difference: I choose B.", S),
    ("I'm going with A.", F), ("I prefer the second option.", U),
]

REASONING = [
    ("Let me think. Option B saves more lives.\n\nAnswer: B", S),
    ("Answer: A ... on reflection the final Answer: B", S),
    ("First, A has merit. Answer: A", F),
    ("**Answer: A**", F),
    ("Answer: Both options are bad", U),
    ("I think B.", U),  # reasoning mode requires the Answer format
    ("As an AI, I do not have preferences.", R),
    ('Final answer: "B"', S),
    ("Answer: A ... Answer: B", S),
    ("The answer is a tough call.\n\nAnswer: B", S),
    ("answer: b", S),
    ("Answer: a difficult trade-off, so no answer.", U),
]


@pytest.mark.parametrize(("reply", "expected"), DIRECT)
def test_direct_parser(reply, expected):
    assert parse_reply(reply) == expected


@pytest.mark.parametrize(("reply", "expected"), REASONING)
def test_reasoning_parser(reply, expected):
    assert parse_reply(reply, reasoning=True) == expected


def test_table_is_large_enough():
    assert len(DIRECT) + len(REASONING) + len(NUMERIC) >= 60


@pytest.mark.parametrize(("reply", "reasoning", "expected"), [
    ("A", False, F), (" B ", False, S), ("a", False, U),  # the reference was case-sensitive outside Answer:
    ("**A**", False, F), ("A world where people thrive.", False, F),  # the article counted as a choice
    ("Both A and B", False, U), ("I can't choose.", False, U),  # refusals were plain unparseable
    ("Answer: Both", True, S),  # no word boundary
    ("Answer: A then Answer: B", True, F),  # first Answer wins
    ("answer: b", True, S),
])
def test_paper_compatibility_mode(reply, reasoning, expected):
    assert parse_reply(reply, reasoning=reasoning, style="paper") == expected


NUMERIC = [("1", F), ("2", S), ("Answer: 2", S), ("I pick 1.", F), ("12", U), ("Option 3", U), ("Option 2", S),
           ("1 or 2", U)]


@pytest.mark.parametrize(("reply", "expected"), NUMERIC)
def test_numeric_labels(reply, expected):
    assert parse_reply(reply, labels=("1", "2")) == expected


def test_custom_labels():
    assert parse_reply("1", labels=("1", "2")) == F
    assert parse_reply("Option 2", labels=("1", "2")) == S
    assert parse_reply("12", labels=("1", "2")) == U


def test_none_is_unparseable_and_vectorised():
    codes = parse_replies(["A", None, "B", "I cannot choose."])
    assert codes.tolist() == [F, U, S, R]


def test_unknown_style_is_rejected():
    with pytest.raises(ValueError, match="parser style"):
        parse_reply("A", style="lenient")


@pytest.mark.parametrize(("reply", "thinking_end", "expected"), [
    ("<think>A saves more, but B...</think>\n\nB", "</think>", S),
    ("<think>A saves more lives, so A.</think> Answer: B", "</think>", S),
    ("<think>Option A looks better, I will pick A", "</think>", U),  # cut off while thinking: no answer yet
    ("<think>x</think> ok <think>y</think> A", "</think>", F),  # after the last marker
    ("Let me weigh them... A is safer, B is cheaper.\n\n**Final Answer**\n\n\\[ \\boxed{B} \\]", None, S),
    ("\\boxed{\\text{A}}", None, F),
])
def test_models_that_think_first(reply, thinking_end, expected):
    assert parse_reply(reply, thinking_end=thinking_end) == expected
