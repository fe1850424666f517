"""DeepSpeed configs and the memory arithmetic behind the README's table and the 70B dry run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from uetool.sft.ds_config import GIB, NodeType, check_fits, deepspeed_config, memory_per_gpu

ROOT = Path(__file__).resolve().parent.parent
P8 = 8_030_261_248


def test_zero3_config_leaves_batch_and_precision_to_the_trainer():
    ds = deepspeed_config(3, offload_optimizer=True)
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu" and "offload_param" not in zero
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True  # a loadable HF folder comes out
    assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["bf16"] == {"enabled": "auto"}
    with pytest.raises(ValueError, match="stage 3"):
        deepspeed_config(2, offload_parameters=True)
    with pytest.raises(ValueError, match="0, 1, 2 or 3"):
        deepspeed_config(4)


def test_memory_follows_the_zero_arithmetic():
    m = memory_per_gpu(P8, gpus=8, hidden_size=4096, layers=32, tokens_per_gpu=4096, stage=3)
    assert m.weights_gib == pytest.approx(2 * P8 / 8 / GIB)
    assert m.gradients_gib == pytest.approx(2 * P8 / 8 / GIB)
    assert m.optimizer_gib == pytest.approx(12 * P8 / 8 / GIB)
    assert m.activations_gib == pytest.approx((32 + 16) * 2 * 4096 * 4096 / GIB)
    # stage 0 partitions nothing; stage 1 the optimizer state; stage 2 also the gradients
    s0 = memory_per_gpu(P8, gpus=8, hidden_size=4096, layers=32, tokens_per_gpu=4096, stage=0)
    s2 = memory_per_gpu(P8, gpus=8, hidden_size=4096, layers=32, tokens_per_gpu=4096, stage=2)
    assert s0.optimizer_gib == pytest.approx(12 * P8 / GIB) and s2.weights_gib == pytest.approx(2 * P8 / GIB)
    assert s2.gradients_gib == pytest.approx(2 * P8 / 8 / GIB)
    # offload moves the Adam state to the hosts: 12 bytes/parameter split over the nodes
    off = memory_per_gpu(70e9, gpus=16, hidden_size=8192, layers=80, tokens_per_gpu=1024, offload_optimizer=True)
    assert off.optimizer_gib == 0 and off.host_per_node_gib == pytest.approx(12 * 70e9 / 2 / GIB)
    lora = memory_per_gpu(P8, gpus=8, hidden_size=4096, layers=32, tokens_per_gpu=4096, trainable_share=0.01)
    assert lora.optimizer_gib == pytest.approx(12 * int(P8 * 0.01) / 8 / GIB)


def test_a_node_that_cannot_hold_the_model_is_named():
    m = memory_per_gpu(70e9, gpus=8, hidden_size=8192, layers=80, tokens_per_gpu=1024)
    with pytest.raises(ValueError, match="8xA10 x 1 cannot train 70.0B parameters on 8 GPUs: each GPU needs"):
        check_fits(m, NodeType("8xA10", 8, 24, 512))
    check_fits(memory_per_gpu(P8, gpus=8, hidden_size=4096, layers=32, tokens_per_gpu=4096),
               NodeType("8xH100", 8, 80, 2048))


def _control(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "jobs.control", f"results_root={tmp_path}", "progress=false",
                           "control.dry_run=true", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_70b_dry_run_builds_the_config_and_fails_clearly_on_a_small_node(tmp_path):
    for sft, gpus in (("llama70b_offload_8gpu", 8), ("llama70b_offload_16gpu", 16)):
        done = _control(tmp_path, "model=llama-31-70b-instruct", f"sft={sft}", f"control.name={sft}")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "70.6B parameters on" in done.stdout and "fits 8xH100-80GB" in done.stdout
        check = json.loads((tmp_path / "control" / sft / "llama-31-70b-instruct" / "dry_run.json").read_text())
        assert check["memory"]["gpus"] == gpus and check["memory"]["optimizer_gib"] == 0  # offloaded
        assert check["deepspeed"]["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
        assert check["memory"]["gpu_total_gib"] < 72
    small = _control(tmp_path, "model=llama-31-70b-instruct", "sft=llama70b_offload_8gpu",
                     "sft.node_type={name:8xL4-24GB,gpus:8,gpu_memory_gib:24,host_memory_gib:512}")
    assert small.returncode == 2
    assert "8xL4-24GB x 1 cannot train 70.6B parameters on 8 GPUs" in small.stderr
    assert "host memory" in small.stderr  # 847 GB of Adam state do not fit 512 GB of host memory


def test_memory_check_counts_a_local_models_parameters_from_its_config(tiny_model):
    from transformers import AutoModelForCausalLM

    from tests.conftest import compose
    from uetool.runtime.config import RunConfig
    from uetool.runtime.control import memory_check

    run = RunConfig.from_dict(compose(["model=tiny-random", f"model.path={tiny_model}"]))
    check = memory_check(run)  # no sft.architecture: counted from config.json, no weights loaded
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert check["memory"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert check["deepspeed"]["zero_optimization"]["stage"] == 3 and "fits" not in check
