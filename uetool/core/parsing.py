"""Turn a model's reply into a choice: first label, second label, unparseable or refusal.

Two parser families:
- `uetool` (default): fixes the reference parser's flaws (METHOD.md section 1): the LAST "Answer:" wins, labels
  must stand as whole words ("Answer: Both" is not B), markdown is stripped (`**A**`), lower-case labels are
  accepted where they cannot be an article ("a", "answer: b", "Option a"), a sentence-initial article ("A world
  where ...") is not a choice, and refusals are told apart from other unparseable replies.
- `paper`: parses exactly as the reference implementation did, so results can be compared with published ones.
  It never reports refusals (the reference folded them into unparseable).

Codes (see README, "Data conventions"): FIRST=0 (the option shown first, label A), SECOND=1, UNPARSEABLE=2,
REFUSAL=3.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

__all__ = ["FIRST", "SECOND", "UNPARSEABLE", "REFUSAL", "FAILED", "CHOICE_NAMES", "parse_reply", "parse_replies",
           "PARSER_STYLES", "is_refusal"]

FIRST, SECOND, UNPARSEABLE, REFUSAL = 0, 1, 2, 3
# no reply at all (the request failed, or returned fewer than K samples): neither a choice nor model behaviour, so
# it is counted apart (failed_request_rate) and never as unparseable
FAILED = 4
CHOICE_NAMES = {FIRST: "first", SECOND: "second", UNPARSEABLE: "unparseable", REFUSAL: "refusal", FAILED: "failed"}
PARSER_STYLES = ("uetool", "paper")

_REFUSAL = re.compile(
    r"\b(?:i\s*(?:can\s*not|can'?t|cannot|won'?t|will\s+not|am\s+unable|'m\s+unable|am\s+not\s+able|'m\s+not\s+able|"
    r"refuse|decline|must\s+decline)\b"
    r"|i\s*(?:do\s*not|don'?t)\s+(?:have|hold|possess|experience)\s+(?:personal\s+|any\s+|real\s+)?"
    r"(?:preferences?|opinions?|feelings|desires|wants|views|beliefs)"
    r"|as\s+an?\s+(?:ai|artificial\s+intelligence|language\s+model|assistant)\b"
    r"|as\s+a\s+(?:large\s+)?language\s+model"
    r"|(?:not|isn'?t)\s+(?:appropriate|possible)\s+for\s+me"
    r"|i(?:'m|\s+am)\s+sorry|i\s+apologi[sz]e"
    r"|no\s+(?:personal\s+)?preference|neither\s+option|neither\b"
    r"|cannot\s+(?:choose|make\s+(?:a|this)\s+(?:choice|decision))"
    r"|unable\s+to\s+(?:choose|express|provide|select))",
    re.IGNORECASE,
)
# Words that, after a sentence-initial "A", show it is the option label rather than the article ("A or B",
# "A because ...", "A is better").
_LABEL_FOLLOWERS = frozenset({"or", "and", "is", "because", "since", "as", "would", "will", "seems", "looks", "it",
                              "for", "but", "over", "vs", "versus", "then", "so", "was", "wins", "please", "clearly",
                              "definitely", "obviously", "here", "overall"})
_MARKDOWN = re.compile(r"[*_`#~>|]")


def is_refusal(text: str) -> bool:
    """Whether the reply declines to choose (checked only when no choice was found)."""
    return bool(_REFUSAL.search(text))


@lru_cache(maxsize=64)
def _patterns(labels: tuple[str, str]) -> dict[str, re.Pattern]:
    alt = "|".join(re.escape(label) for label in labels)
    return {
        # "Answer: A", "answer - **b**", "final answer: (A)"; the label must end at a word boundary.
        "answer": re.compile(rf"(?:answer\s*(?:is|:|-|=)|\\boxed\{{)\s*[\"'(\[]*\s*(?:\\text\{{)?\s*({alt})(?![\w])",
                             re.IGNORECASE),
        "option": re.compile(rf"\b(?:option|choice)\s+[\"'(\[]*({alt})(?![\w])", re.IGNORECASE),
        # a whole reply that is just the label with punctuation/brackets around it: "A", "(b).", "'A'"
        "bare": re.compile(rf"^[\s\"'(\[{{.:]*(?:option\s+|choice\s+)?({alt})[\s\"')\]}}.,!:;]*$", re.IGNORECASE),
        "token": re.compile(rf"(?<![\w'])({alt})(?![\w'])"),
        "paper_answer": re.compile(rf"Answer:\s*({alt})", re.IGNORECASE),
        "paper_tokens": [re.compile(rf"(?:^|[^\w])({re.escape(label)})(?:[^\w]|$)") for label in labels],
    }


def _code_for(match_text: str, labels: tuple[str, str]) -> int:
    lowered = match_text.lower()
    return FIRST if lowered == labels[0].lower() else SECOND


def _article_follows(text: str, end: int) -> bool:
    """Whether a lower-case word that does not mark a label choice follows position `end` ("a difficult one")."""
    following = re.match(r"\s+([a-z]+)", text[end:])
    return following is not None and following.group(1) not in _LABEL_FOLLOWERS


def _labels_in(pattern: re.Pattern, text: str) -> list[str]:
    """Labels a case-insensitive pattern found, leaving out a lower-case "a" used as the article: "The answer is a
    difficult one", "a choice a person must make" (a capital label, or "a" at the end of a clause, still counts)."""
    return [m.group(1) for m in pattern.finditer(text)
            if not (m.group(1) == "a" and _article_follows(text, m.end(1)))]


def _is_article(text: str, start: int, label: str) -> bool:
    """'A' used as the indefinite article: sentence-initial and followed by a lower-case word ("A world where")."""
    if label.lower() != "a":
        return False
    before = text[:start].rstrip(" \t\"'(")
    sentence_initial = not before or before[-1] in ".!?:\n"
    following = re.match(r"\s+([a-z]+)", text[start + 1:])
    return sentence_initial and following is not None and following.group(1) not in _LABEL_FOLLOWERS


def _parse_uetool(text: str, labels: tuple[str, str], reasoning: bool) -> int:
    clean = _MARKDOWN.sub("", text).strip()
    if not clean:
        return UNPARSEABLE
    pats = _patterns(labels)
    answers = _labels_in(pats["answer"], clean)
    if answers:
        return _code_for(answers[-1], labels)  # the last "Answer:" is the final one
    if reasoning:
        return REFUSAL if is_refusal(clean) else UNPARSEABLE
    bare = pats["bare"].match(clean)
    if bare:
        return _code_for(bare.group(1), labels)
    options = {_code_for(m, labels) for m in _labels_in(pats["option"], clean)}
    if len(options) == 1:
        return options.pop()
    if not options:
        found = {_code_for(m.group(1), labels) for m in pats["token"].finditer(clean)
                 if not _is_article(clean, m.start(1), m.group(1))}
        if len(found) == 1:  # a stated choice wins over hedging ("As an AI ... However, I would pick A.")
            return found.pop()
    return REFUSAL if is_refusal(clean) else UNPARSEABLE


def _parse_paper(text: str, labels: tuple[str, str], reasoning: bool) -> int:
    """The reference implementation's rules, reproduced for comparability (including its flaws)."""
    pats = _patterns(labels)
    if reasoning:
        match = pats["paper_answer"].search(text)  # first match, no word boundary
        if not match:
            return UNPARSEABLE
        return _code_for(match.group(1), labels)
    stripped = text.strip()
    if stripped == labels[0]:
        return FIRST
    if stripped == labels[1]:
        return SECOND
    hits = [bool(p.search(stripped)) for p in pats["paper_tokens"]]
    if sum(hits) == 1:
        return FIRST if hits[0] else SECOND
    return UNPARSEABLE


def parse_reply(text: str | None, *, reasoning: bool = False, labels: tuple[str, str] | list[str] = ("A", "B"),
                style: str = "uetool", thinking_end: str | None = None) -> int:
    """Parse one reply to a choice code. `None` (a failed request) is unparseable.

    `thinking_end`: for models that think before they answer, the marker that closes the thinking ("</think>"):
    only what follows its last occurrence is parsed, and a reply without it (cut off while thinking) is unparseable.
    """
    if style not in PARSER_STYLES:
        raise ValueError(f"parser style must be one of {PARSER_STYLES}, got {style!r}")
    if text is None:
        return UNPARSEABLE
    if thinking_end:
        if thinking_end not in text:
            return UNPARSEABLE
        text = text.rsplit(thinking_end, 1)[1].strip()
    labels = tuple(labels)
    # fast path for the overwhelmingly common reply, identical in both styles
    if text == labels[0]:
        return FIRST
    if text == labels[1]:
        return SECOND
    return _parse_paper(text, labels, reasoning) if style == "paper" else _parse_uetool(text, labels, reasoning)


def parse_replies(texts: Iterable[str | None], **kwargs) -> np.ndarray:
    """Vector of choice codes (int8) for many replies."""
    return np.fromiter((parse_reply(t, **kwargs) for t in texts), dtype=np.int8)
