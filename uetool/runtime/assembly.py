"""Citizen assemblies through the engine pool (README "Utility control").

`run_assembly` draws the citizens (census marginals or a PUMS file, party imputed), the preference questions (pairs
of the run's outcomes) and each question's assembly, then asks every seated citizen both orders of its questions
with its persona as the system message, through the same Elicitor, pool, response store and parser as every other
job: each response is stored before it is used, so a killed assembly resumes and asks nothing twice. The prompts
are grouped per citizen (one system message per request batch), with a progress bar over prompts.

Results in `<root>/assembly/<name>/<model>/`: questions.parquet (per question: the outcomes, votes for a and b over
citizens and orders, refusals, unparseable and failed replies apart, p_a and the majority), answers.parquet (per
question and seat: the citizen and its counts), citizens.parquet (attributes and persona), utilities.parquet (a
Thurstonian fit of the assembly's utilities from its votes), metrics.json, config.yaml, provenance.json.

Simulated citizens (`engine=simulated`, e.g. model sim-citizens) answer from a planted rule
(`assembly.planted_category`): a known target for testing the control loop end to end.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..core.assembly import (
    MAJORITY_A,
    MAJORITY_B,
    NO_VOTES,
    TIE,
    AssemblyVotes,
    assembly_questions,
    planted_utilities,
    seat_citizens,
    tally_counts,
)
from ..core.census import citizens_from_marginals, impute_party, load_census
from ..core.citizens import DEFAULT_PERSONA_TEMPLATE, Citizen, citizens_from_pums, persona_prompt
from ..core.progress import progress_bar
from ..core.thurstonian import fit_thurstonian
from ..io.analysis_results import write_parquet
from ..io.files import remove_temporary_files, write_atomic
from ..io.results import json_safe, utilities_frame
from ..io.store import ResponseStore
from .compute import open_pool, run_provenance
from .config import RunConfig, redacted_yaml
from .elicit import Elicitor
from .sweep_plan import DEFAULT_CONF, load_model_entry

__all__ = ["run_assembly", "citizens_run", "draw_citizens", "AssemblyResult", "read_assembly"]

_MAJORITY_NAMES = {MAJORITY_A: "a", MAJORITY_B: "b", TIE: "tie", NO_VOTES: "none"}


@dataclass
class AssemblyResult:
    out_dir: str
    pairs: np.ndarray  # (questions, 2) outcome indices
    votes: AssemblyVotes
    metrics: dict
    summary: str


def citizens_run(run: RunConfig, conf_dir=None) -> RunConfig:
    """The run whose model answers as the citizens: `assembly.model` (or the run's own model), elicited with the
    assembly's mode, k and temperature; a simulated model answers from the planted rule."""
    asm = run.assembly
    cfg = dict(run.raw)
    if asm.model is not None and asm.model != run.model.key:
        try:
            cfg["model"] = load_model_entry(DEFAULT_CONF if conf_dir is None else conf_dir, asm.model)
        except ValueError as err:
            raise ValueError(f"`assembly.model={asm.model}`: {err}".replace("sweep names unknown", "unknown")) \
                from None
        cfg["engine"] = {"name": cfg["model"].get("engine")}
    cfg["elicitation"] = {**dict(cfg.get("elicitation") or {}), "mode": asm.mode, "k": asm.k,
                          "temperature": asm.temperature}
    cfg["experiment"] = {"name": "compute_utilities"}
    citizens = RunConfig.from_dict(cfg, outcomes=run.outcomes)
    if citizens.engine.name == "simulated":
        if asm.planted_category is None:
            raise ValueError(f"model '{citizens.model.key}' is simulated: simulated citizens answer from a planted "
                             "rule; set assembly.planted_category (and assembly.planted_strength)")
        mean = planted_utilities(run.outcomes.categories, asm.planted_category, asm.planted_strength)
        kwargs = {**citizens.engine.kwargs, "world": f"assembly:{asm.planted_category}:{asm.planted_strength:g}",
                  "n_outcomes": len(run.outcomes), "truth_mean": [float(x) for x in mean],
                  "truth_variance": [1.0] * len(mean)}
        citizens = replace(citizens, engine=replace(citizens.engine, kwargs=kwargs))
    elif asm.planted_category is not None:
        raise ValueError(f"assembly.planted_category is for simulated citizens; model '{citizens.model.key}' "
                         f"answers as itself (set it to null)")
    elif citizens.engine.name == "simulated_text":
        raise ValueError("simulated citizens run on engine=simulated (model sim-citizens), not simulated_text")
    return citizens


def draw_citizens(run: RunConfig) -> list[Citizen]:
    asm = run.assembly
    if asm.citizens == "builtin":
        return citizens_from_marginals(asm.population, load_census(), seed=run.seed)
    try:
        frame = pd.read_csv(asm.citizens)
    except (OSError, ValueError) as err:
        raise ValueError(f"assembly.citizens={asm.citizens}: cannot read it as an ACS PUMS person CSV ({err})") \
            from None
    return impute_party(citizens_from_pums(frame, asm.population, seed=run.seed), load_census(), seed=run.seed)


def run_assembly(cfg: dict | RunConfig, *, pool=None, conf_dir=None) -> AssemblyResult:
    started = time.perf_counter()
    run = cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)
    citizens_cfg = citizens_run(run, conf_dir)
    citizens_cfg.check_environment()
    asm = run.assembly
    template = asm.persona_template or DEFAULT_PERSONA_TEMPLATE
    citizens = draw_citizens(run)
    personas = [persona_prompt(c, template, asm.steering) for c in citizens]  # a bad template fails here
    pairs = assembly_questions(run.outcomes.categories, asm.n_questions, seed=run.seed,
                               contrast=asm.contrast_category)
    seats = seat_citizens(len(pairs), asm.citizens_per_question, len(citizens), seed=run.seed)
    layout = run.layout
    fs = layout.filesystem[0]
    out_dir = layout.run_dir("assembly", asm.name, citizens_cfg.model.key)
    fs.create_dir(out_dir, recursive=True)
    store = ResponseStore(layout, citizens_cfg.model.key)
    with store.hold(wait_s=run.store.lock_wait_s):
        store.remove_temporary_files()
        remove_temporary_files(fs, out_dir)
        len(store)
        counts, stats, engine_seconds, device = _ask(citizens_cfg, personas, pairs, seats, store, pool)
    votes = tally_counts(counts, asm.k)
    wall = time.perf_counter() - started
    fit = _fit(len(run.outcomes), pairs, votes)
    metrics = _metrics(run, citizens_cfg, pairs, votes, stats, engine_seconds, wall, fit)
    _write(run, citizens_cfg, out_dir, citizens, personas, pairs, seats, counts, votes, fit, metrics, device)
    summary = _summary(metrics)
    write_atomic(fs, f"{out_dir}/summary.txt", summary.encode())
    return AssemblyResult(out_dir=out_dir, pairs=pairs, votes=votes, metrics=metrics, summary=summary)


def _ask(citizens_cfg: RunConfig, personas: list[str], pairs: np.ndarray, seats: np.ndarray, store, pool):
    """(questions, seats, 6) counts: each citizen asked its questions in one batch, both orders."""
    counts = np.zeros((len(pairs), seats.shape[1], 6))
    by_citizen = np.argsort(seats, axis=None, kind="stable")
    flat = seats.reshape(-1)[by_citizen]
    bounds = np.flatnonzero(np.diff(flat)) + 1
    groups = np.split(by_citizen, bounds)
    own_pool = pool is None
    engine_seconds = 0.0
    totals = {"requests": 0, "reused": 0, "asked": 0, "failed_requests": 0, "given_up": 0, "errors": []}
    device = None
    try:
        if own_pool:
            pool = open_pool(replace(citizens_cfg, progress=False))  # one bar over all citizens, not one per call
            pool.pids()
        resources = getattr(pool, "resources", None)
        if resources is not None:
            from .compute import _engine_device

            device = _engine_device(citizens_cfg, resources)
        engine_arguments = getattr(pool, "engine_arguments", None) or citizens_cfg.engine_arguments()
        settings = citizens_cfg.answer_settings(engine_arguments)
        e = citizens_cfg.elicitation
        bar = progress_bar(citizens_cfg.progress, 2 * seats.size, desc="assembly prompts", unit="prompt")
        try:
            for group in groups:
                questions, seat = np.divmod(group, seats.shape[1])
                citizen = int(seats[questions[0], seat[0]])
                elicitor = Elicitor(citizens_cfg.outcomes, citizens_cfg.template, citizens_cfg.generation_settings,
                                    pool=pool, store=store, model_id=citizens_cfg.model.model_id,
                                    revision=citizens_cfg.model.revision, engine_settings=settings,
                                    system_message=personas[citizen], parser_style=e.parser,
                                    thinking_end=citizens_cfg.model.thinking_end, max_attempts=e.max_attempts,
                                    max_failure_rate=e.max_failure_rate)
                counts[questions, seat] = elicitor(pairs[questions])
                s = elicitor.stats
                engine_seconds += s.engine_seconds
                for key in ("requests", "reused", "asked", "failed_requests", "given_up"):
                    totals[key] += getattr(s, key)
                totals["errors"] = (totals["errors"] + [x for x in s.errors if x not in totals["errors"]])[:5]
                bar.update(2 * len(questions))
        finally:
            bar.close()
    finally:
        if own_pool and pool is not None:
            pool.shutdown()
    return counts, totals, engine_seconds, device


def _fit(n_outcomes: int, pairs: np.ndarray, votes: AssemblyVotes):
    """The assembly's utilities: a Thurstonian fit to its vote shares, weighted by valid votes."""
    w = votes.n_a + votes.n_b
    keep = w > 0
    p = np.where(keep, votes.n_a / np.where(keep, w, 1), 0.5)
    return fit_thurstonian(n_outcomes, pairs[keep, 0], pairs[keep, 1], p[keep], w[keep])


def _metrics(run, citizens_cfg, pairs, votes, stats, engine_seconds, wall, fit) -> dict:
    majority = votes.majority
    prompts = int(stats["requests"])
    valid = float((votes.n_a + votes.n_b).sum())
    replies = valid + float(votes.n_refusal.sum() + votes.n_unparseable.sum())
    return {"assembly": run.assembly.name, "model": citizens_cfg.model.key, "n_questions": int(len(pairs)),
            "population": run.assembly.population, "citizens_per_question": run.assembly.citizens_per_question,
            "mode": citizens_cfg.generation_settings.mode, "k": citizens_cfg.generation_settings.k,
            "prompts": prompts, "asked_prompts": int(stats["asked"]), "reused_prompts": int(stats["reused"]),
            "failed_prompts": int(stats["failed_requests"]), "given_up_prompts": int(stats["given_up"]),
            "failure_examples": stats["errors"],
            "majority_a": int((majority == MAJORITY_A).sum()), "majority_b": int((majority == MAJORITY_B).sum()),
            "ties": int((majority == TIE).sum()), "questions_without_votes": int((majority == NO_VOTES).sum()),
            "refusal_rate": float(votes.n_refusal.sum() / replies) if replies else float("nan"),
            "unparseable_rate": float(votes.n_unparseable.sum() / replies) if replies else float("nan"),
            "mean_margin": float(np.nanmean(np.abs(votes.p_a - 0.5) * 2)) if len(pairs) else float("nan"),
            "fit_train_accuracy": float(fit.train_accuracy),
            "engine_seconds": engine_seconds, "wall_seconds": wall,
            "prompts_per_second": (int(stats["asked"]) / engine_seconds) if engine_seconds > 0 else float("nan")}


def _write(run, citizens_cfg, out_dir, citizens, personas, pairs, seats, counts, votes, fit, metrics, device):
    fs = run.layout.filesystem[0]
    o = run.outcomes
    ids, desc, cats = list(o.ids), list(o.descriptions), list(o.categories)
    a, b = pairs[:, 0], pairs[:, 1]
    questions = pd.DataFrame({
        "question": np.arange(len(pairs)), "a": a, "b": b, "a_id": [ids[i] for i in a],
        "b_id": [ids[i] for i in b], "a_description": [desc[i] for i in a], "b_description": [desc[i] for i in b],
        "a_category": [cats[i] for i in a], "b_category": [cats[i] for i in b], "n_a": votes.n_a, "n_b": votes.n_b,
        "n_refusal": votes.n_refusal, "n_unparseable": votes.n_unparseable, "n_failed": votes.n_failed,
        "p_a": votes.p_a, "majority": [_MAJORITY_NAMES[int(m)] for m in votes.majority]})
    q, s = np.divmod(np.arange(seats.size), seats.shape[1])
    flat = counts.reshape(-1, 6)
    answers = pd.DataFrame({"question": q, "seat": s, "citizen": seats.reshape(-1), "n_a_orig": flat[:, 0],
                            "n_b_orig": flat[:, 1], "n_a_flip": flat[:, 2], "n_b_flip": flat[:, 3],
                            "n_unparseable": flat[:, 4], "n_refusal": flat[:, 5]})
    people = pd.DataFrame([{"citizen": i, **c.to_dict(), "persona": personas[i]} for i, c in enumerate(citizens)])
    write_parquet(fs, f"{out_dir}/questions.parquet", questions)
    write_parquet(fs, f"{out_dir}/answers.parquet", answers)
    write_parquet(fs, f"{out_dir}/citizens.parquet", people)
    write_parquet(fs, f"{out_dir}/utilities.parquet", utilities_frame(o, fit))
    write_atomic(fs, f"{out_dir}/metrics.json", json.dumps(json_safe(metrics), indent=2).encode())
    write_atomic(fs, f"{out_dir}/config.yaml", redacted_yaml(run.raw).encode())
    prov = run_provenance(citizens_cfg, device)
    write_atomic(fs, f"{out_dir}/provenance.json", json.dumps(json_safe(prov), indent=2).encode())


def _summary(m: dict) -> str:
    return (f"assembly {m['assembly']} answered by {m['model']}: {m['n_questions']} questions x "
            f"{m['citizens_per_question']} citizens (population {m['population']}), {m['prompts']} prompts "
            f"({m['asked_prompts']} asked, {m['reused_prompts']} reused from the store, {m['failed_prompts']} "
            f"failed)\nmajorities: a {m['majority_a']}, b {m['majority_b']}, ties {m['ties']} (left out of agreement)"
            f", no votes {m['questions_without_votes']}; refusal rate {m['refusal_rate']:.3f}, unparseable rate "
            f"{m['unparseable_rate']:.3f}\nthroughput {m['prompts_per_second']:.1f} prompts/s over "
            f"{m['engine_seconds']:.1f} s of engine time; wall {m['wall_seconds']:.1f} s")


def read_assembly(out_dir: str) -> tuple[pd.DataFrame, dict]:
    """(questions.parquet, metrics.json) of a finished assembly."""
    from ..io.files import read_bytes, resolve_filesystem

    fs, path = resolve_filesystem(out_dir)
    import io

    import pyarrow.parquet as pq

    questions = pq.read_table(io.BytesIO(read_bytes(fs, f"{path}/questions.parquet"))).to_pandas()
    return questions, json.loads(read_bytes(fs, f"{path}/metrics.json"))
