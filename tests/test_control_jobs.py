"""Assemblies and utility control end to end: jobs.assembly with simulated citizens (a planted rule) and with a
real engine killed mid-run, SFT on Ray Train (TRL + DeepSpeed ZeRO-3, 2 gloo workers) on the tiny model: train,
checkpoint, resume after a worker dies, LoRA, gather, serve the tuned weights and re-elicit (jobs.control)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from uetool.io.store import ResponseStore

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}


def _job(module: str, root: Path, *args: str, env: dict | None = None, timeout: int = 900):
    return subprocess.run([sys.executable, "-m", module, f"results_root={root}", "progress=false", "ray.num_cpus=2",
                           *args], cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=timeout)


def test_simulated_assembly_recovers_its_planted_rule_and_resumes_from_the_store(tmp_path):
    args = ("model=sim-citizens", "assembly=planted_animals", "outcomes=main", "assembly.n_questions=100")
    done = _job("jobs.assembly", tmp_path, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "assembly" / "planted_animals" / "sim-citizens"
    questions = pd.read_parquet(out / "questions.parquet")
    assert len(questions) == 100 and (questions[["a", "b"]].nunique() > 1).all()
    planted_a = questions["a_category"] == "animal_wellbeing"
    assert ((questions["b_category"] == "animal_wellbeing") != planted_a).all()  # every question is a contrast
    decided = questions["majority"].isin(["a", "b"])
    agree = (questions["majority"] == np.where(planted_a, "a", "b"))[decided]
    assert agree.mean() > 0.95  # Phi(3 / sqrt 2) = 0.98 per vote; majorities of 12 votes
    assert ((questions["n_a"] + questions["n_b"] + questions["n_refusal"] + questions["n_unparseable"]) == 12).all()
    answers = pd.read_parquet(out / "answers.parquet")
    assert len(answers) == 600 and answers.groupby("question")["citizen"].nunique().eq(6).all()
    citizens = pd.read_parquet(out / "citizens.parquet")
    assert len(citizens) == 120 and citizens["persona"].str.contains("You identify as").mean() > 0.9
    utilities = pd.read_parquet(out / "utilities.parquet")
    animal = utilities["category"] == "animal_wellbeing"
    assert utilities.loc[animal, "mean"].mean() > utilities.loc[~animal, "mean"].mean() + 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["prompts"] == 1200 and metrics["asked_prompts"] == 1200
    again = _job("jobs.assembly", tmp_path, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["asked_prompts"] == 0 and metrics["reused_prompts"] == 1200  # never asked twice
    pd.testing.assert_frame_equal(questions, pd.read_parquet(out / "questions.parquet"))


def test_assembly_config_errors_are_named(tmp_path):
    planted_real = _job("jobs.assembly", tmp_path, "model=tiny-random", "assembly.planted_category=sports")
    assert planted_real.returncode == 2 and "planted_category is for simulated citizens" in planted_real.stderr
    missing = _job("jobs.assembly", tmp_path, "model=tiny-random", f"assembly.citizens={tmp_path}/nope.csv")
    assert missing.returncode == 2 and "cannot read it as an ACS PUMS person CSV" in missing.stderr
    unplanted = _job("jobs.assembly", tmp_path, "model=sim-citizens")
    assert unplanted.returncode == 2 and "set assembly.planted_category" in unplanted.stderr


def test_assembly_on_a_real_engine_killed_mid_run_resumes_and_asks_nothing_twice(tmp_path):
    args = ("model=tiny-random", "outcomes=main", "assembly.n_questions=60", "assembly.population=30",
            "pool.batch_size=8", "pool.shard_size=16")
    proc = subprocess.Popen([sys.executable, "-m", "jobs.assembly", f"results_root={tmp_path}", "progress=false",
                             "ray.num_cpus=2", *args], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    store_dir = tmp_path / "responses" / "tiny-random"
    deadline = time.time() + 300
    while time.time() < deadline and not (store_dir.exists() and len(list(store_dir.glob("part-*"))) >= 3):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = ResponseStore(str(tmp_path), "tiny-random").count_rows()
    assert 0 < stored < 720  # killed part-way: 60 questions x 6 citizens x 2 orders
    done = _job("jobs.assembly", tmp_path, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "assembly" / "default" / "tiny-random" / "metrics.json").read_text())
    assert metrics["prompts"] == 720 and metrics["reused_prompts"] >= stored
    assert metrics["asked_prompts"] + metrics["reused_prompts"] == 720
    store = ResponseStore(str(tmp_path), "tiny-random")
    assert store.count_rows() == len(store) == 720  # every prompt stored once


def _sft_data(tmp_path, tiny_model) -> str:
    from transformers import AutoTokenizer

    from uetool.core.assembly import sft_rows
    from uetool.core.prompts import get_template
    from uetool.sft.data import render_rows, write_split

    descriptions = [f"outcome number {i}" for i in range(20)]
    pairs = np.array([(i, (i + 3) % 20) for i in range(20)])
    counts = np.zeros((20, 2, 2), np.int64)
    counts[:, :, 0], counts[:, :, 1] = 4, 2
    rows = sft_rows(pairs, descriptions, get_template("paper"), counts, np.arange(20), "You are a helpful assistant.")
    path = str(tmp_path / "train.parquet")
    write_split(render_rows(rows, AutoTokenizer.from_pretrained(tiny_model)), path)
    return path


def test_sft_resumes_after_a_worker_dies_and_ends_as_an_uninterrupted_run(ray_cluster, tiny_model, tmp_path,
                                                                          monkeypatch):
    from uetool.sft.ds_config import deepspeed_config
    from uetool.sft.ray_sft import FAULT_ENV, SFTOptions, train_sft

    data = _sft_data(tmp_path, tiny_model)
    options = SFTOptions(num_workers=2, epochs=1, per_device_batch_size=8, save_steps=4, learning_rate=1e-3,
                         deepspeed=deepspeed_config(3))
    clean = train_sft(tiny_model, data, str(tmp_path / "clean"), options, storage_path=str(tmp_path / "ray"),
                      run_name="clean")
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"6:{marker}")  # read by train_sft in this (the driver's) process
    killed = train_sft(tiny_model, data, str(tmp_path / "killed-run"), options, storage_path=str(tmp_path / "ray"),
                       run_name="killed")
    assert marker.read_text() == "6"  # rank 1 died at step 6; the group restarted from the step-4 checkpoint
    assert clean.history["global_step"] == killed.history["global_step"] == 15
    assert clean.history["loss"][-1] < clean.history["loss"][0] - 1  # training loss falls
    assert abs(killed.history["loss"][-1] - clean.history["loss"][-1]) <= 0.02 * clean.history["loss"][-1]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(killed.path)  # gathered ZeRO-3 weights: a loadable HF folder
    assert sum(p.numel() for p in model.parameters()) > 0
    assert (Path(killed.path) / "tokenizer_config.json").exists()


def test_lora_adapter_is_trained_and_merged(ray_cluster, tiny_model, tmp_path):
    from uetool.sft.ds_config import deepspeed_config
    from uetool.sft.ray_sft import LoraOptions, SFTOptions, train_sft

    options = SFTOptions(num_workers=2, epochs=1, per_device_batch_size=8, save_steps=100, learning_rate=1e-2,
                         deepspeed=deepspeed_config(3), lora=LoraOptions(r=4, alpha=8, dropout=0.0))
    trained = train_sft(tiny_model, _sft_data(tmp_path, tiny_model), str(tmp_path / "lora"), options,
                        storage_path=str(tmp_path / "ray"), run_name="lora")
    assert trained.history["loss"][-1] < trained.history["loss"][0]
    files = set(os.listdir(trained.path))
    assert "model.safetensors" in files and "adapter_config.json" not in files  # merged, servable by any engine


def test_control_job_trains_serves_and_re_elicits_the_tiny_model(tmp_path):
    done = _job("jobs.control", tmp_path, "model=tiny-random", "assembly=planted_animals", "outcomes=main",
                "assembly.n_questions=40", "sft.epochs=1", "sft.save_steps=5", "sft.learning_rate=1e-3",
                "control.coherence_outcomes=quickstart", "transitivity.n_triads=200", "control.maximization=true",
                "+maximization.max_questions=2", "+maximization.max_answers=4", "control.political=true",
                "+political_values.max_policies=6", "+political_values.max_entities=3")
    assert done.returncode == 0, done.stderr[-4000:]
    out = tmp_path / "control" / "default" / "tiny-random"
    h = json.loads((out / "control.json").read_text())
    assert h["n_train_questions"] == 32 and h["n_test_questions"] == 8 and h["n_train_examples"] == 32 * 12
    for key in ("agreement_before", "agreement_after"):
        assert 0 <= h[key]["agreement"] <= 1 and h[key]["n_questions"] + h[key]["n_ties"] == 8
    assert h["train_loss_last"] < h["train_loss_first"] and h["train_tokens_per_s"] > 0
    assert h["asked_before"]["asked"] == 16 and h["asked_after"]["asked"] == 16  # the tuned model was asked anew
    assert h["capability_before"]["n_mc"] == h["capability_after"]["n_mc"] == 20
    assert set(h["coherence"]) >= {"holdout_accuracy", "hard_cycle_rate"}  # compute_utilities before and after
    assert (tmp_path / "compute_utilities" / "tiny-random.control-default" / "utilities.parquet").exists()
    assert set(h["maximization"]) >= {"top1_rate", "top3_rate", "chance_top1"}  # the analysis before and after
    assert all(0 <= x <= 1 for pair in h["maximization"].values() for x in pair)
    assert h["maximization"]["chance_top1"] == [0.25, 0.25]  # 2 questions of 4 answers each, both times
    assert (tmp_path / "maximization" / "tiny-random.control-default" / "metrics.json").exists()
    assert "utility maximisation: top1_rate" in (out / "report.html").read_text()
    political = h["political"]  # the base model's entity PCA, the tuned model placed in it
    assert political["n_entities"] == 3 and political["n_policies"] == 6
    assert all(isinstance(x, float) for x in political["ai_pc1"] + political["ai_pc2"])
    tuned_political = tmp_path / "political_values" / "tiny-random.control-default"
    tuned_analysis = json.loads((tuned_political / "analysis.json").read_text())
    assert tuned_analysis["reference"].endswith("political_values/tiny-random")  # the base run's folder
    assert tuned_analysis["ai_pc1"] == political["ai_pc1"][1]
    assert sorted(p.name for p in tuned_political.iterdir() if p.is_dir()) == ["ai", "checkpoints"]
    assert len(list((tmp_path / "political_values" / "tiny-random").glob("*/utilities.parquet"))) == 4
    assert "political position PC1" in (out / "report.html").read_text() and (out / "political.png").exists()
    train, test = (pd.read_parquet(out / "data" / f"{s}.parquet") for s in ("train", "test"))
    assert not set(train["question"]) & set(test["question"])  # split by question, never by sample
    from transformers import AutoTokenizer

    from uetool.engines.weights import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny-random"))
    messages = [dict(m) for m in train["messages"].iloc[0]]
    assert train["prompt"].iloc[0] == tokenizer.apply_chat_template(messages[:-1], tokenize=False,
                                                                    add_generation_prompt=True)  # its chat template
    assert (train["text"] == train["prompt"] + train["completion"]).all()
    assert set(train["label"]) <= {"A", "B"}
    agreement = pd.read_parquet(out / "agreement.parquet")
    assert len(agreement) == 8 and agreement["p_a_after"].between(0, 1).all()
    assert (out / "tuned" / "model.safetensors").exists() and (out / "report.html").exists()
    assert list((out / "ray_train" / "sft").glob("checkpoint_*"))
    tuned_store = ResponseStore(str(tmp_path), "tiny-random.control-default")
    assert tuned_store.count_rows() == len(tuned_store) > 16  # held-out questions + coherence run, each once
