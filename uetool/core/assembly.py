"""Citizen assemblies as targets for utility control (METHOD.md s.6): tallies, majorities, agreement, SFT labels.

An assembly answers each preference question (a pair of outcomes a, b) with k citizens, each once per order (or K
times). A citizen's reply is a choice code (core.parsing) of the option shown first or second; here the codes are
turned back into votes for a or b, refusals, unparseable and failed replies counted apart. The assembly's target is
its empirical share of votes for a (over citizens and both orders); its majority is a, b or a tie (ties are counted
and left out of agreement). Training examples follow the assembly's distribution: per training question and order,
as many examples as the assembly has citizens, labelled in proportion to its votes, so a model tuned on them learns
the assembly's distribution and not only its majority. Questions are split into train and test as a whole, never
by sample. Pure functions (no model, no files).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import bootstrap_mean_ci
from .parsing import FAILED, FIRST, REFUSAL, SECOND, UNPARSEABLE
from .prompts import FLIPPED, ORIGINAL

__all__ = ["AssemblyVotes", "tally_assembly", "tally_counts", "assembly_questions", "seat_citizens",
           "planted_utilities", "agreement_with_majority", "split_by_question", "proportional_labels",
           "sft_label_counts", "sft_rows", "MAJORITY_A", "MAJORITY_B", "TIE", "NO_VOTES"]

MAJORITY_A, MAJORITY_B, TIE, NO_VOTES = 1, -1, 0, -2


@dataclass
class AssemblyVotes:
    """Per question: votes for a and for b (orientation undone), refusals, unparseable and failed replies."""

    n_a: np.ndarray
    n_b: np.ndarray
    n_refusal: np.ndarray
    n_unparseable: np.ndarray
    n_failed: np.ndarray

    @property
    def p_a(self) -> np.ndarray:
        """Share of valid votes for a (NaN where the assembly gave no valid vote)."""
        total = self.n_a + self.n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, self.n_a / np.where(total > 0, total, 1), np.nan)

    @property
    def majority(self) -> np.ndarray:
        """MAJORITY_A, MAJORITY_B, TIE or NO_VOTES per question."""
        out = np.sign(self.n_a - self.n_b).astype(np.int64)
        out[(self.n_a + self.n_b) == 0] = NO_VOTES
        return out


def tally_assembly(codes: np.ndarray) -> AssemblyVotes:
    """Votes from choice codes of shape (questions, citizens, 2 orders, K): order ORIGINAL shows a first, FLIPPED
    shows b first, so FIRST in the flipped order is a vote for b."""
    codes = np.asarray(codes)
    if codes.ndim != 4 or codes.shape[2] != 2:
        raise ValueError(f"assembly codes have shape (questions, citizens, 2 orders, K), got {codes.shape}")
    original, flipped = codes[:, :, ORIGINAL], codes[:, :, FLIPPED]

    def count(array: np.ndarray, code: int) -> np.ndarray:
        return (array == code).sum(axis=(1, 2)).astype(np.int64)

    return AssemblyVotes(n_a=count(original, FIRST) + count(flipped, SECOND),
                         n_b=count(original, SECOND) + count(flipped, FIRST),
                         n_refusal=count(codes.reshape(len(codes), -1, 1), REFUSAL),
                         n_unparseable=count(codes.reshape(len(codes), -1, 1), UNPARSEABLE),
                         n_failed=count(codes.reshape(len(codes), -1, 1), FAILED))


def tally_counts(counts: np.ndarray, k: int) -> AssemblyVotes:
    """Votes from per-citizen count rows of shape (questions, citizens, 6) as `core.edges.counts_from_choices`
    makes them (a first, b first, a flipped, b flipped, unparseable, refusal), each citizen asked `k` times per
    order; what is missing from 2k per citizen failed. Logprob counts (expected values) give fractional votes."""
    counts = np.asarray(counts, np.float64)
    if counts.ndim != 3 or counts.shape[2] != 6:
        raise ValueError(f"assembly counts have shape (questions, citizens, 6), got {counts.shape}")
    total = counts.sum(axis=(1, 2))
    return AssemblyVotes(n_a=counts[:, :, [0, 2]].sum(axis=(1, 2)), n_b=counts[:, :, [1, 3]].sum(axis=(1, 2)),
                         n_refusal=counts[:, :, 5].sum(1), n_unparseable=counts[:, :, 4].sum(1),
                         n_failed=np.clip(2 * k * counts.shape[1] - total, 0, None))


def assembly_questions(categories: list[str] | tuple[str, ...], n_questions: int, *, seed: int = 0,
                       contrast: str | None = None) -> np.ndarray:
    """(n_questions, 2) distinct unordered pairs of outcome indices (each shown in a random orientation).

    `contrast`: every pair joins one outcome of that category with one outside it (questions a rule about the
    category decides). Drawn by rejection of repeats: O(n_questions), never O(N^2) in the outcomes."""
    cats = np.asarray(categories)
    n = len(cats)
    if contrast is not None:
        inside, outside = np.flatnonzero(cats == contrast), np.flatnonzero(cats != contrast)
        if not inside.size or not outside.size:
            raise ValueError(f"contrast category {contrast!r} needs outcomes inside and outside it; categories: "
                             f"{sorted(set(cats.tolist()))}")
        available = inside.size * outside.size
    else:
        available = n * (n - 1) // 2
    if n_questions < 1 or n_questions > available:
        raise ValueError(f"cannot draw {n_questions} distinct questions: {available} pairs exist")
    rng = np.random.default_rng([seed, 109])
    chosen: dict[tuple[int, int], None] = {}
    while len(chosen) < n_questions:
        m = 2 * (n_questions - len(chosen)) + 8
        if contrast is not None:
            a, b = rng.choice(inside, m), rng.choice(outside, m)
        else:
            a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            if x != y:
                chosen.setdefault((min(x, y), max(x, y)), None)
                if len(chosen) == n_questions:
                    break
    pairs = np.array(list(chosen), np.int64)
    swap = rng.random(len(pairs)) < 0.5
    pairs[swap] = pairs[swap][:, ::-1]
    return pairs


def seat_citizens(n_questions: int, k: int, population: int, *, seed: int = 0) -> np.ndarray:
    """(n_questions, k) citizen indices: each question's assembly, k distinct citizens drawn from the population."""
    if not 1 <= k <= population:
        raise ValueError(f"an assembly of {k} citizens needs 1 <= k <= population ({population})")
    rng = np.random.default_rng([seed, 113])
    return np.stack([rng.choice(population, k, replace=False) for _ in range(n_questions)]).astype(np.int64)


def planted_utilities(categories: list[str] | tuple[str, ...], category: str, strength: float) -> np.ndarray:
    """Utilities of a simulated assembly with a planted rule: `strength` for outcomes of `category`, 0 otherwise
    (a Thurstonian agent then prefers the category with probability Phi(strength / sqrt(2)) at unit variance)."""
    cats = np.asarray(categories)
    if category not in set(cats.tolist()):
        raise ValueError(f"planted category {category!r} is not among the outcomes' categories "
                         f"{sorted(set(cats.tolist()))}")
    return np.where(cats == category, float(strength), 0.0)


def agreement_with_majority(p_model_a: np.ndarray, votes: AssemblyVotes, *, seed: int = 0) -> dict:
    """Share of questions where the model's preferred option (P(a) > 0.5: a; < 0.5: b) is the assembly's majority,
    over questions with a strict majority; a model at exactly 0.5 agrees with neither. With a 95% bootstrap CI over
    questions and the counts of ties and questions without votes (all left out)."""
    p = np.asarray(p_model_a, np.float64)
    majority = votes.majority
    if p.shape != majority.shape:
        raise ValueError(f"{p.size} model probabilities for {majority.size} questions")
    decided = (majority == MAJORITY_A) | (majority == MAJORITY_B)
    model = np.sign(p - 0.5)
    hits = (model[decided] == majority[decided]).astype(np.float64)
    return {"agreement": float(hits.mean()) if hits.size else float("nan"),
            "agreement_ci": bootstrap_mean_ci(hits, seed=seed), "n_questions": int(decided.sum()),
            "n_ties": int((majority == TIE).sum()), "n_without_votes": int((majority == NO_VOTES).sum())}


def split_by_question(n_questions: int, test_fraction: float = 0.2, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) question indices, sorted, disjoint, seeded: whole questions go to one side."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n_questions < 2:
        raise ValueError(f"a train/test split needs at least 2 questions, got {n_questions}")
    order = np.random.default_rng([seed, 97]).permutation(n_questions)
    n_test = min(n_questions - 1, max(1, int(round(test_fraction * n_questions))))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def proportional_labels(p_a: float, n_examples: int) -> tuple[int, int]:
    """(examples labelled a, examples labelled b) out of `n_examples`, in proportion to `p_a` (rounded half away
    from the lesser side: 0.5 of 5 gives 3 to a, the order the question was written in)."""
    if not 0 <= p_a <= 1 or n_examples < 1:
        raise ValueError(f"need 0 <= p_a <= 1 and n_examples >= 1, got {p_a}, {n_examples}")
    n_a = int(np.floor(p_a * n_examples + 0.5))
    return n_a, n_examples - n_a


def sft_label_counts(votes: AssemblyVotes, questions: np.ndarray, n_citizens: int) -> np.ndarray:
    """(len(questions), 2 orders, 2) counts of training examples labelled (a, b) per question and order: as many per
    order as the assembly has citizens, in proportion to its votes; questions without votes get none."""
    out = np.zeros((len(questions), 2, 2), np.int64)
    p = votes.p_a
    for row, q in enumerate(np.asarray(questions, np.int64).tolist()):
        if np.isfinite(p[q]):
            out[row, :, :] = proportional_labels(float(p[q]), n_citizens)
    return out


def sft_rows(pairs: np.ndarray, descriptions: list[str] | tuple[str, ...], template, label_counts: np.ndarray,
             questions: np.ndarray, system_message: str | None = None) -> list[dict]:
    """Conversational training examples (TRL's `messages` format) for the training questions: per question and
    order, `label_counts[i, order]` = (examples answering a, examples answering b), each an exchange whose user
    turn is the comparison prompt (a shown first in ORIGINAL, b first in FLIPPED) and whose assistant turn is the
    label of the option the example answers. `template`: a core.prompts.PromptTemplate."""
    pairs = np.asarray(pairs, np.int64)
    rows = []
    for i, q in enumerate(np.asarray(questions, np.int64).tolist()):
        a, b = int(pairs[q, 0]), int(pairs[q, 1])
        for order in (ORIGINAL, FLIPPED):
            first, second = (a, b) if order == ORIGINAL else (b, a)
            prompt = template.render(descriptions[first], descriptions[second])
            n_a, n_b = (int(x) for x in label_counts[i, order])
            # the label of option a is the first label in ORIGINAL and the second in FLIPPED
            label_a, label_b = (template.labels if order == ORIGINAL else template.labels[::-1])
            for label, count, chosen in ((label_a, n_a, a), (label_b, n_b, b)):
                for _ in range(count):
                    messages = ([{"role": "system", "content": system_message}] if system_message else [])
                    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": label}]
                    rows.append({"question": q, "a": a, "b": b, "order": order, "chosen": chosen,
                                 "messages": messages})
    return rows
