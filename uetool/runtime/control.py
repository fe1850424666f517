"""Utility control end to end (README "Utility control"): assembly -> SFT data -> before -> SFT -> after -> report.

`run_control` runs (or resumes) the citizen assembly, splits its questions into train and test by question, writes
the SFT data (Hugging Face Parquet, the tuned model's chat template), asks the model the held-out questions through
the engine pool, fine-tunes it on Ray Train (TRL SFTTrainer + DeepSpeed; `uetool.sft.ray_sft`), serves the tuned
weights through a new pool and asks again, and measures capability (held-out text loss, two-option accuracy) and,
optionally, coherence on a base outcome set, utility maximisation (the `maximization` analysis) and the political
position (the `political_values` analysis: the tuned model placed in the base model's entity PCA) before and
after. Results in `<root>/control/<name>/<model>/`: data/{train,test}.parquet, agreement.parquet (per held-out
question: the assembly's vote share and majority, the model's P(a) before and after), history.parquet (loss and
tokens/s per step), control.json (every headline number with CIs), loss.png, agreement.png, political.png
(control.political), report.html, config.yaml; the tuned model in `tuned/`, Ray Train's checkpoints in
`ray_train/`.

Every model answer is stored before it is used: the tuned model's store key carries a digest of its weights, so a
retrained model is never answered from an earlier one's replies. `control.dry_run` only builds the DeepSpeed config
and checks the memory arithmetic against `sft.node_type` (`uetool.sft.ds_config`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.assembly import AssemblyVotes, agreement_with_majority, sft_label_counts, sft_rows, split_by_question
from ..io.analysis_results import write_parquet
from ..io.files import write_atomic
from ..io.results import json_safe
from ..io.store import ResponseStore
from .assembly import run_assembly
from .compute import open_pool
from .config import RunConfig, redacted_yaml
from .elicit import Elicitor

__all__ = ["run_control", "memory_check", "model_preferences"]


def memory_check(run: RunConfig) -> dict:
    """The DeepSpeed config and per-GPU memory of the `sft` section; raises ValueError when `sft.node_type` cannot
    hold the model (the 70B dry run)."""
    from ..sft.ds_config import NodeType, check_fits, memory_per_gpu

    sft = run.sft
    options = sft.options(run.seed)
    arch = dict(sft.architecture or {})
    if not arch:
        arch = _architecture_of(run)
    missing = sorted({"parameters", "hidden_size", "layers"} - set(arch))
    if missing:
        raise ValueError(f"`sft.architecture` lacks {missing}: give parameters, hidden_size and layers")
    ds = sft.deepspeed or {}
    trainable = 1.0
    if sft.lora is not None:  # adapters on every projection of every layer: r * (in + out) per matrix
        r = int(sft.lora.get("r", 16))
        per_layer = r * 2 * arch["hidden_size"] * 7 * 2  # 4 attention + 3 MLP matrices, ~2 hidden-sized sides
        trainable = min(1.0, per_layer * arch["layers"] / arch["parameters"])
    gpus_per_node = int((sft.node_type or {}).get("gpus", 8))
    estimate = memory_per_gpu(int(arch["parameters"]), gpus=sft.num_workers, hidden_size=int(arch["hidden_size"]),
                              layers=int(arch["layers"]), tokens_per_gpu=sft.per_device_batch_size * sft.max_length,
                              stage=int(ds.get("stage", 0)) if sft.deepspeed is not None else 0,
                              offload_optimizer=bool(ds.get("offload_optimizer")),
                              offload_parameters=bool(ds.get("offload_parameters")), trainable_share=trainable,
                              gpus_per_node=gpus_per_node, gradient_checkpointing=sft.gradient_checkpointing)
    out = {"deepspeed": options.deepspeed, "memory": estimate.to_dict(), "node_type": sft.node_type}
    if sft.node_type is not None:
        node = NodeType(**sft.node_type)
        check_fits(estimate, node)
        out["fits"] = True
    return out


def _architecture_of(run: RunConfig) -> dict:
    """Parameters, hidden size and layers from a local model folder's config.json (no weights loaded)."""
    from ..engines.weights import resolve_model_path

    path = Path(resolve_model_path(str(run.model.path)))
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").exists() else None
    if config is None:
        raise ValueError(f"model '{run.model.key}' has no local config.json: give `sft.architecture` "
                         "({parameters, hidden_size, layers})")
    hidden, layers = int(config["hidden_size"]), int(config["num_hidden_layers"])
    inter, vocab = int(config.get("intermediate_size", 4 * hidden)), int(config["vocab_size"])
    heads = int(config["num_attention_heads"])
    kv = int(config.get("num_key_value_heads", heads))
    head_dim = int(config.get("head_dim", hidden // heads))
    per_layer = hidden * head_dim * (2 * heads + 2 * kv) + 3 * hidden * inter + 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
    return {"parameters": per_layer * layers + embeddings + hidden, "hidden_size": hidden, "layers": layers}


def model_preferences(run: RunConfig, pairs: np.ndarray, *, pool=None) -> tuple[np.ndarray, dict]:
    """The model's P(a) per question (both orders pooled: a position bias cancels), asked through the pool in
    `control.eval_mode`, every answer stored first; and the elicitation counts."""
    store = ResponseStore(run.layout, run.model.key)
    own = pool is None
    with store.hold(wait_s=run.store.lock_wait_s):
        store.remove_temporary_files()
        try:
            if own:
                pool = open_pool(run)
            engine_arguments = getattr(pool, "engine_arguments", None) or run.engine_arguments()
            e = run.elicitation
            elicitor = Elicitor(run.outcomes, run.template, run.generation_settings, pool=pool, store=store,
                                model_id=run.model.model_id, revision=run.model.revision,
                                engine_settings=run.answer_settings(engine_arguments), system_message=e.system_message,
                                parser_style=e.parser, thinking_end=run.model.thinking_end,
                                max_attempts=e.max_attempts, max_failure_rate=e.max_failure_rate)
            counts = elicitor(pairs)
        finally:
            if own and pool is not None:
                pool.shutdown()
    n_a, n_b = counts[:, 0] + counts[:, 2], counts[:, 1] + counts[:, 3]
    total = n_a + n_b
    p = np.where(total > 0, n_a / np.where(total > 0, total, 1), 0.5)
    s = elicitor.stats
    return p, {"requests": s.requests, "asked": s.asked, "reused": s.reused, "failed": s.failed_requests}


def _eval_run(run: RunConfig, model: dict | None = None, outcomes_source: str | None = None) -> RunConfig:
    """The run asking `model` (None: the run's own) as the held-out questions are asked: `control.eval_mode` and
    `eval_k`, over the run's outcomes or the set at `outcomes_source`."""
    from ..core.outcomes import load_outcomes

    cfg = dict(run.raw)
    if model is not None:
        cfg["model"] = model
    c = run.control
    cfg["elicitation"] = {**dict(cfg.get("elicitation") or {}), "mode": c.eval_mode, "k": c.eval_k}
    cfg["experiment"] = {"name": "compute_utilities"}
    outcomes = run.outcomes
    if outcomes_source is not None:
        cfg["outcomes"] = {"name": Path(outcomes_source).stem, "source": outcomes_source}
        outcomes = load_outcomes(outcomes_source)
    return RunConfig.from_dict(cfg, outcomes=outcomes)


COHERENCE_METRICS = ("holdout_accuracy", "holdout_log_loss", "average_confidence", "log10_cycle_probability",
                     "hard_cycle_rate", "position_bias")


def _coherence(run: RunConfig, model: dict | None) -> dict:
    """compute_utilities on `control.coherence_outcomes` for the base model (None) or the tuned one, elicited as
    the held-out questions are; its results land in `<root>/compute_utilities/<model key>/` as any run's."""
    from .compute import compute_utilities

    return compute_utilities(_eval_run(run, model, str(run.control.coherence_outcomes)))["metrics"]


MAXIMIZATION_METRICS = ("top1_rate", "top3_rate", "top5_rate", "unmatched_rate", "judged_rate", "chance_top1")


def _maximization(run: RunConfig, model: dict | None) -> dict:
    """The utility-maximisation analysis (`maximization.*` settings) for the base model (None) or the tuned one,
    its pairwise questions asked as the held-out questions are; results in `<root>/maximization/<model key>/`."""
    from .analysis import run_analysis

    cfg = dict(_eval_run(run, model).raw)
    cfg["experiment"] = {"name": "maximization"}
    cfg["maximization"] = dict(run.raw.get("maximization") or {})
    return run_analysis(RunConfig.from_dict(cfg, outcomes=run.outcomes))["metrics"]


POLITICAL_KEYS = ("ai_pc1", "ai_pc2", "nearest_entity", "nearest_cosine")


def _political(run: RunConfig, tuned: dict, timings: dict) -> tuple[dict, pd.DataFrame]:
    """political_values (its `political_values.*` settings) for the base model, its questions asked as the
    held-out questions are; then the tuned model's own policy utilities placed in the base model's entity PCA
    (`political_values.reference`: the entities are not simulated again). ({metric: [before, after], ...}, the
    tuned run's items: the entities and the tuned model in the base's axes)."""
    from ..io.analysis_results import read_items
    from .analysis import run_analysis

    started = time.perf_counter()
    cfg = dict(_eval_run(run).raw)
    cfg["experiment"] = {"name": "political_values"}
    section = dict(run.raw.get("political_values") or {})
    cfg["political_values"] = section
    before = run_analysis(RunConfig.from_dict(cfg, outcomes=run.outcomes))
    cfg = dict(_eval_run(run, tuned).raw)
    cfg["experiment"] = {"name": "political_values"}
    cfg["political_values"] = {**section, "reference": _uri(run, before["out_dir"])}
    after = run_analysis(RunConfig.from_dict(cfg, outcomes=run.outcomes))
    timings["political"] = time.perf_counter() - started
    b, a = before["analysis"], after["analysis"]
    out = {k: [b[k], a[k]] for k in POLITICAL_KEYS}
    out.update(anchor=b["settings"]["anchor"], pc1_explained=b["pc1_explained"], pc2_explained=b["pc2_explained"],
               n_entities=b["n_entities"], n_policies=b["n_policies"], before_dir=before["out_dir"],
               after_dir=after["out_dir"])
    return out, read_items(run.layout.filesystem[0], after["out_dir"])


def _before_after(measure, run: RunConfig, tuned: dict, keys: tuple[str, ...], timings: dict, name: str) -> dict:
    """`measure(run, model)` for the base model (None) and the tuned one: {metric: [before, after]}."""
    started = time.perf_counter()
    before, after = measure(run, None), measure(run, tuned)
    timings[name] = time.perf_counter() - started
    return {k: [before[k], after[k]] for k in keys if k in before and k in after}


def _weights_digest(path: str) -> str:
    digest = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        if name.endswith((".safetensors", ".bin")) and name != "training_args.bin":
            with open(os.path.join(path, name), "rb") as f:
                for chunk in iter(lambda: f.read(1 << 24), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:12]


def _tuned_model(run: RunConfig, path: str) -> dict:
    """The tuned model's entry: a key of its own and a name that carries its weights' digest (its store keys)."""
    entry = dict(run.raw["model"])
    entry.update(key=f"{run.model.key}.control-{run.control.name}", path=path, revision=None,
                 name=f"{run.model.model_id}+control-{run.control.name}@{_weights_digest(path)}", params_b=None,
                 mmlu=None)
    return entry


def _subset_votes(votes: AssemblyVotes, index: np.ndarray) -> AssemblyVotes:
    return AssemblyVotes(*(getattr(votes, f)[index] for f in ("n_a", "n_b", "n_refusal", "n_unparseable",
                                                                "n_failed")))


def _capability(path: str, seed: int, num_cpus: float) -> dict:
    import ray

    from ..sft.capability import capability_check

    task = ray.remote(num_cpus=num_cpus)(capability_check)
    return ray.get(task.remote(path, seed=seed, num_threads=int(num_cpus)))


def run_control(cfg: dict | RunConfig, *, conf_dir=None) -> dict:
    started = time.perf_counter()
    run = cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)
    c, sft = run.control, run.sft
    layout = run.layout
    fs = layout.filesystem[0]
    out_dir = layout.run_dir("control", c.name, run.model.key)
    if c.dry_run:
        check = memory_check(run)
        fs.create_dir(out_dir, recursive=True)
        write_atomic(fs, f"{out_dir}/dry_run.json", json.dumps(json_safe(check), indent=2).encode())
        m = check["memory"]
        summary = (f"dry run: {m['parameters'] / 1e9:.1f}B parameters on {m['gpus']} GPUs need "
                   f"{m['gpu_total_gib']:.1f} GiB per GPU (weights {m['weights_gib']:.1f}, gradients "
                   f"{m['gradients_gib']:.1f}, optimizer {m['optimizer_gib']:.1f}, activations "
                   f"{m['activations_gib']:.1f}) and {m['host_per_node_gib']:.0f} GiB of host memory per node"
                   + (f"; fits {sft.node_type['name']}" if sft.node_type else ""))
        return {"summary": summary, "out_dir": out_dir, "dry_run": check}
    if sft.node_type is not None:
        memory_check(run)  # a node type that cannot hold the model fails before anything runs
    if run.engine.name in ("simulated", "simulated_text", "openai"):
        raise ValueError(f"model '{run.model.key}' runs on engine={run.engine.name}: utility control fine-tunes "
                         "local weights (engine hf or vllm)")
    from ..engines.weights import resolve_model_path

    base_path = resolve_model_path(str(run.model.path))
    timings: dict[str, float] = {}

    assembly_started = time.perf_counter()
    assembly = run_assembly(run, conf_dir=conf_dir)
    timings["assembly"] = time.perf_counter() - assembly_started
    votes, pairs = assembly.votes, assembly.pairs
    train, test = split_by_question(len(pairs), sft.test_fraction, seed=run.seed)
    if sft.max_train_questions is not None:
        train = train[: int(sft.max_train_questions)]

    from transformers import AutoTokenizer

    from ..sft.data import render_rows, write_split

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    k = run.assembly.citizens_per_question
    system = run.elicitation.system_message if run.model.accepts_system_message else None
    train_rows = render_rows(sft_rows(pairs, run.outcomes.descriptions, run.template,
                                      sft_label_counts(votes, train, k), train, system), tokenizer)
    majority_counts = np.zeros((len(test), 2, 2), np.int64)
    majority = votes.majority[test]
    majority_counts[majority == 1, :, 0] = 1
    majority_counts[majority == -1, :, 1] = 1
    test_rows = render_rows(sft_rows(pairs, run.outcomes.descriptions, run.template, majority_counts, test, system),
                            tokenizer)
    train_path, test_path = f"{out_dir}/data/train.parquet", f"{out_dir}/data/test.parquet"
    write_split(train_rows, _uri(run, train_path))
    write_split(test_rows, _uri(run, test_path))

    eval_base = _eval_run(run)
    before_started = time.perf_counter()
    p_before, asked_before = model_preferences(eval_base, pairs[test])
    test_votes = _subset_votes(votes, test)
    agreement_before = agreement_with_majority(p_before, test_votes, seed=run.seed)
    capability_before = _capability(base_path, run.seed, 1) if c.capability else None
    timings["before"] = time.perf_counter() - before_started

    train_started = time.perf_counter()
    from ..sft.ray_sft import train_sft

    work = tempfile.mkdtemp(prefix="uetool-control-")
    tuned_local = os.path.join(work, "tuned")
    trained = train_sft(base_path, _uri(run, train_path), tuned_local, sft.options(run.seed),
                        storage_path=_uri(run, f"{out_dir}/ray_train"), run_name="sft")
    timings["train"] = time.perf_counter() - train_started
    tuned_dir = f"{out_dir}/tuned"
    _copy_dir(run, tuned_local, tuned_dir)
    serve_path = tuned_dir if "://" not in run.results_root else tuned_local

    after_started = time.perf_counter()
    tuned = _tuned_model(run, serve_path)  # its store key carries a digest of the weights: computed once
    eval_tuned = _eval_run(run, tuned)
    p_after, asked_after = model_preferences(eval_tuned, pairs[test])
    agreement_after = agreement_with_majority(p_after, test_votes, seed=run.seed)
    capability_after = _capability(serve_path, run.seed, 1) if c.capability else None
    timings["after"] = time.perf_counter() - after_started
    coherence = (_before_after(_coherence, run, tuned, COHERENCE_METRICS, timings, "coherence")
                 if c.coherence_outcomes else None)
    maximization = (_before_after(_maximization, run, tuned, MAXIMIZATION_METRICS, timings, "maximization")
                    if c.maximization else None)
    political, political_items = _political(run, tuned, timings) if c.political else (None, None)
    timings["total"] = time.perf_counter() - started

    history = trained.history
    losses = history["loss"]
    rates = [r["tokens_per_s_per_worker"] for r in history["throughput"]]
    headline = {
        "model": run.model.key, "tuned_model": eval_tuned.model.key, "assembly": assembly.metrics["assembly"],
        "assembly_model": assembly.metrics["model"], "n_train_questions": int(len(train)),
        "n_test_questions": int(len(test)), "n_train_examples": len(train_rows),
        "agreement_before": agreement_before, "agreement_after": agreement_after,
        "train_loss_first": float(losses[0]) if losses else float("nan"),
        "train_loss_last": float(losses[-1]) if losses else float("nan"),
        "train_tokens_per_s": float(np.median(rates)) if rates else float("nan"),  # per worker
        "train_steps": history["global_step"], "num_workers": sft.num_workers,
        "capability_before": capability_before, "capability_after": capability_after, "coherence": coherence,
        "maximization": maximization, "political": political, "asked_before": asked_before,
        "asked_after": asked_after, "timings": timings,
        "checkpoint": trained.checkpoint_path, "tuned_path": tuned_dir, "deepspeed": sft.options(run.seed).deepspeed,
        "lora": sft.lora}
    frame = pd.DataFrame({"question": test, "a": pairs[test, 0], "b": pairs[test, 1],
                          "a_description": [run.outcomes.descriptions[i] for i in pairs[test, 0]],
                          "b_description": [run.outcomes.descriptions[i] for i in pairs[test, 1]],
                          "assembly_p_a": test_votes.p_a, "assembly_majority": test_votes.majority,
                          "p_a_before": p_before, "p_a_after": p_after})
    steps = pd.DataFrame({"step": history["step"], "loss": losses})
    throughput = pd.DataFrame(history["throughput"], columns=["step", "tokens_per_s_per_worker"])
    steps = steps.merge(throughput, on="step", how="left")
    write_parquet(fs, f"{out_dir}/agreement.parquet", frame)
    write_parquet(fs, f"{out_dir}/history.parquet", steps)
    write_atomic(fs, f"{out_dir}/control.json", json.dumps(json_safe(headline), indent=2).encode())
    write_atomic(fs, f"{out_dir}/config.yaml", redacted_yaml(run.raw).encode())
    from ..reporting.control_report import write_control_report

    write_control_report(fs, out_dir, headline, steps, frame, political_items)
    shutil.rmtree(work, ignore_errors=True)
    summary = _summary(headline)
    write_atomic(fs, f"{out_dir}/summary.txt", summary.encode())
    return {"summary": summary, "out_dir": out_dir, "control": headline}


def _uri(run: RunConfig, path: str) -> str:
    """A path on the results filesystem as a string pyarrow (and Ray Train's storage) can open again."""
    root = run.results_root
    if "://" in root:
        scheme = root.split("://", 1)[0]
        return f"{scheme}://{path.lstrip('/')}"
    return path


def _copy_dir(run: RunConfig, local: str, destination: str) -> None:
    import pyarrow.fs as pafs

    fs = run.layout.filesystem[0]
    if isinstance(fs, pafs.LocalFileSystem):
        shutil.rmtree(destination, ignore_errors=True)
        shutil.copytree(local, destination)
        return
    fs.create_dir(destination, recursive=True)
    pafs.copy_files(local, destination, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def _summary(h: dict) -> str:
    b, a = h["agreement_before"], h["agreement_after"]

    def ci(x: dict) -> str:
        low, high = x["agreement_ci"]
        return f"{x['agreement']:.3f} [{low:.3f}, {high:.3f}]"

    lines = [f"utility control of {h['model']} toward assembly {h['assembly']} ({h['assembly_model']}): "
             f"{h['n_train_questions']} training questions ({h['n_train_examples']} examples), "
             f"{h['n_test_questions']} held out",
             f"agreement with the assembly majority (held out, ties left out): before {ci(b)}, after {ci(a)}",
             f"training loss {h['train_loss_first']:.3f} -> {h['train_loss_last']:.3f} over {h['train_steps']} steps "
             f"on {h['num_workers']} workers, {h['train_tokens_per_s']:.0f} tokens/s per worker"]
    if h["capability_before"] is not None:
        cb, ca = h["capability_before"], h["capability_after"]
        lines.append(f"capability: held-out text loss {cb['text_loss']:.3f} -> {ca['text_loss']:.3f}; two-option "
                     f"accuracy {cb['mc_accuracy']:.2f} -> {ca['mc_accuracy']:.2f}")
    for name, (before, after) in (h.get("coherence") or {}).items():
        lines.append(f"coherence {name}: {before:.3f} -> {after:.3f}")
    for name, (before, after) in (h.get("maximization") or {}).items():
        lines.append(f"utility maximisation {name}: {before:.3f} -> {after:.3f}")
    if h.get("political"):
        p = h["political"]
        lines.append(f"political position (PC1 of {p['n_entities']} simulated entities, {p['anchor']} < 0): "
                     f"{p['ai_pc1'][0]:.2f} -> {p['ai_pc1'][1]:.2f}; nearest {p['nearest_entity'][0]} -> "
                     f"{p['nearest_entity'][1]}")
    lines.append(f"wall {h['timings']['total']:.0f} s (assembly {h['timings']['assembly']:.0f}, train "
                 f"{h['timings']['train']:.0f})")
    return "\n".join(lines)

