"""cluster/: every manifest parses, has its required fields, keeps secrets out, and fits the model configs.

No Ray cluster is started here: the placement-group bundles come from `replica_bundles`, a pure function.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from uetool.runtime.config import replica_bundles

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"
GPU_MEMORY_LABEL = "uetool.io/gpu-memory-gb"
# conf/model tensor_parallel_size values are the paper's, chosen for 80 GB GPUs (README, "Configuration")
ASSUMED_GPU_MEMORY_GB = 80
SECRET_PATTERNS = [re.compile(p) for p in (r"sk-[A-Za-z0-9_-]{16,}", r"sk-ant-[A-Za-z0-9_-]{8,}",
                                           r"\bhf_[A-Za-z0-9]{16,}", r"xai-[A-Za-z0-9]{16,}", r"AKIA[0-9A-Z]{16}",
                                           r"ghp_[A-Za-z0-9]{20,}")]
# a whole word of an env var name (TOKENIZERS_PARALLELISM is not a secret, HF_TOKEN is)
SECRET_NAME = re.compile(r"(?:^|_)(?:KEY|TOKEN|SECRET|PASSWORD)(?:$|_)", re.IGNORECASE)


def _load(path: str) -> dict:
    return yaml.safe_load((CLUSTER / path).read_text())


def _models() -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "conf" / "model").glob("*.yaml"))]


def _open_weight_models() -> list[dict]:
    # served from weights on GPUs (vllm, or hf for the small demo models); API and simulated models need no GPU
    return [m for m in _models() if m.get("provider") == "hf"]


def _api_key_envs() -> set[str]:
    return {m["api_key_env"] for m in _models() if m.get("api_key_env")}


def _cpu(quantity: str | int) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _launcher_gpu_types() -> dict[str, dict]:
    """name -> {'GPU', 'CPU', 'gpu_memory_gb'} for the launcher's GPU worker types."""
    types = _load("cluster.yaml")["available_node_types"]
    return {name: {"GPU": t["resources"]["GPU"], "CPU": t["resources"]["CPU"],
                   "gpu_memory_gb": int(t["labels"][GPU_MEMORY_LABEL])}
            for name, t in types.items() if t["resources"].get("GPU", 0) > 0}


def _ray_labels(start_params: dict) -> dict[str, str]:
    pairs = [p.split("=") for p in start_params.get("labels", "").split(",") if p]
    return {k.strip(): v.strip() for k, v in pairs}


def _kuberay_gpu_groups(spec: dict) -> dict[str, dict]:
    groups = {}
    for group in spec["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        limits = container["resources"]["limits"]
        groups[group["groupName"]] = {"GPU": int(limits["nvidia.com/gpu"]), "CPU": _cpu(limits["cpu"]),
                                      "gpu_memory_gb": int(_ray_labels(group["rayStartParams"])[GPU_MEMORY_LABEL])}
        assert group["template"]["metadata"]["labels"][GPU_MEMORY_LABEL] == str(groups[group["groupName"]]
                                                                                ["gpu_memory_gb"])
    return groups


def _cluster_specs() -> dict[str, dict]:
    return {"raycluster": _load("kuberay/raycluster.yaml")["spec"],
            "rayjob": _load("kuberay/rayjob.yaml")["spec"]["rayClusterSpec"]}


def _containers(spec: dict) -> list[dict]:
    templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    return [c for t in templates for c in t["spec"]["containers"]]


def _node_shapes() -> dict[str, dict[str, dict]]:
    shapes = {"cluster.yaml": _launcher_gpu_types()}
    shapes.update({name: _kuberay_gpu_groups(spec) for name, spec in _cluster_specs().items()})
    return shapes


def test_every_yaml_parses_to_a_mapping():
    paths = sorted(CLUSTER.rglob("*.yaml"))
    assert {p.relative_to(CLUSTER).as_posix() for p in paths} >= {
        "cluster.yaml", "runtime_env.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml"}
    for path in paths:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_launcher_config_is_valid_and_shaped():
    import ray.autoscaler
    from jsonschema import validate

    config = _load("cluster.yaml")
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type"):
        assert config[key], key
    # the launcher's own schema, shipped with Ray
    validate(config, json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text()))
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0  # CPU head: no GPU work there
    assert any("--num-gpus=0" in cmd for cmd in config["head_start_ray_commands"])
    gpu = _launcher_gpu_types()
    assert {name: t["GPU"] for name, t in gpu.items()} == {"gpu-1x": 1, "gpu-8x": 8, "train-8x": 8}
    for name in gpu:
        node_type = config["available_node_types"][name]
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"]
    setup = " ".join(config["setup_commands"])
    assert re.search(r'pip install .*"torch==2\.14\.0" -e "\$HOME/uetool\[vllm[,\]]', setup)
    for cmd in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        assert "ray start" not in cmd or "RAY_AUTH_MODE=token ray start" in cmd  # token auth on every node
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_kuberay_manifests_have_required_fields_and_gpu_groups():
    for path, kind in (("kuberay/raycluster.yaml", "RayCluster"), ("kuberay/rayjob.yaml", "RayJob"),
                       ("kuberay/rayjob-control.yaml", "RayJob")):
        doc = _load(path)
        assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == kind
        assert doc["metadata"]["name"] and doc["spec"]
    for name, spec in _cluster_specs().items():
        assert spec["rayVersion"] == "2.60.0", name
        assert spec["authOptions"]["mode"] == "token", name  # token authentication stays on
        head = spec["headGroupSpec"]
        assert head["rayStartParams"]["num-gpus"] == "0"
        assert all("nvidia.com/gpu" not in c["resources"]["limits"] for c in head["template"]["spec"]["containers"])
        groups = _kuberay_gpu_groups(spec)
        assert {g: v["GPU"] for g, v in groups.items()} == {"gpu-1x": 1, "gpu-8x": 8}, name
        for group in spec["workerGroupSpecs"]:
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert _kuberay_gpu_groups(_cluster_specs()["raycluster"]) == _kuberay_gpu_groups(_cluster_specs()["rayjob"])
    job = _load("kuberay/rayjob.yaml")["spec"]
    assert job["entrypoint"] == "python -m jobs.sweep sweep=open_weight experiment=compute_utilities"
    assert yaml.safe_load(job["runtimeEnvYAML"])["env_vars"]["PYTHONPATH"] == "/home/ray/uetool"


def test_no_secret_values_anywhere_in_cluster():
    for path in sorted(p for p in CLUSTER.rglob("*") if p.is_file()):
        text = path.read_text()
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(text), f"{path}: looks like a secret ({pattern.pattern})"
        assert "RAY_AUTH_MODE=disabled" not in text and "mode: disabled" not in text, path
    runtime_env = _load("runtime_env.yaml")
    assert not [k for k in runtime_env.get("env_vars", {}) if SECRET_NAME.search(k)]


@pytest.mark.parametrize("manifest", ["raycluster", "rayjob", "rayjob-control"])
def test_api_keys_come_from_secret_key_refs(manifest):
    required = _api_key_envs() | {"HF_TOKEN"}
    assert {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "XAI_API_KEY"} <= required
    spec = (_load("kuberay/rayjob-control.yaml")["spec"]["rayClusterSpec"] if manifest == "rayjob-control"
            else _cluster_specs()[manifest])
    for container in _containers(spec):
        env = {e["name"]: e for e in container.get("env", [])}
        assert required <= set(env), f"{container['name']} lacks {sorted(required - set(env))}"
        for name, entry in env.items():
            if SECRET_NAME.search(name):
                assert "value" not in entry, f"{name} has a literal value"
                assert entry["valueFrom"]["secretKeyRef"]["name"], name


def test_every_open_weight_model_fits_a_node_type_by_tp_and_memory():
    utilisation = yaml.safe_load((ROOT / "conf" / "engine" / "vllm.yaml").read_text())["gpu_memory_utilization"]
    models = _open_weight_models()
    assert len(models) >= 57
    for source, shapes in _node_shapes().items():
        assert {t["gpu_memory_gb"] for t in shapes.values()} == {ASSUMED_GPU_MEMORY_GB}, source
        max_gpus = max(t["GPU"] for t in shapes.values())
        for model in models:
            tp = int(model["tensor_parallel_size"])
            assert tp <= 1 or (tp <= max_gpus and max_gpus % tp == 0), (source, model["key"], tp)
            bytes_per_param = 1 if "fp8" in model["key"] else {"float32": 4}.get(model.get("dtype"), 2)
            weights_gb = float(model["params_b"] or 0) * bytes_per_param
            # the weights' share per GPU must leave room for the KV cache inside vLLM's memory budget
            per_gpu = weights_gb / max(tp, 1)
            assert per_gpu <= ASSUMED_GPU_MEMORY_GB * utilisation * 0.85, (model["key"], per_gpu)


def test_replica_placement_groups_fit_a_node_type():
    num_cpus = float(yaml.safe_load((ROOT / "conf" / "pool" / "default.yaml").read_text())["num_cpus"])
    tps = set()
    for source, shapes in _node_shapes().items():
        for model in _open_weight_models():
            tp = max(int(model["tensor_parallel_size"]), 1)
            tps.add(tp)
            bundles = replica_bundles(tp, num_cpus, num_gpus=float(tp))
            assert len(bundles) == tp
            need_gpu, need_cpu = sum(b["GPU"] for b in bundles), sum(b["CPU"] for b in bundles)
            # STRICT_PACK: the whole group on one node
            fits = [name for name, t in shapes.items() if need_gpu <= t["GPU"] and need_cpu <= t["CPU"]]
            assert fits, (source, model["key"], bundles)
            assert ("gpu-1x" in fits) == (tp == 1), (source, model["key"])
    assert tps == {1, 2, 4, 8}


def test_sft_node_types_exist_in_the_cluster_and_hold_their_models():
    """conf/sft node types are the launcher's and the control RayJob's training nodes, and the memory arithmetic
    (uetool.sft.ds_config) says each config fits its node type."""
    from uetool.runtime.control_config import SFTSection
    from uetool.sft.ds_config import NodeType, check_fits, memory_per_gpu

    launcher = _load("cluster.yaml")["available_node_types"]["train-8x"]
    job = _load("kuberay/rayjob-control.yaml")["spec"]
    (group,) = job["rayClusterSpec"]["workerGroupSpecs"]
    assert group["groupName"] == "train-8x" and "jobs.control" in job["entrypoint"]
    (container,) = group["template"]["spec"]["containers"]
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == launcher["resources"]["GPU"] == 8
    checked = 0
    for path in sorted((ROOT / "conf" / "sft").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        merged: dict = {}
        for parent in raw.get("defaults", []):  # the configs inherit from one another
            if parent != "_self_":
                merged.update(yaml.safe_load((path.parent / f"{parent}.yaml").read_text()))
                for grand in merged.pop("defaults", []):
                    if grand != "_self_":
                        merged = {**yaml.safe_load((path.parent / f"{grand}.yaml").read_text()), **merged}
        merged.pop("defaults", None)
        merged.update({k: v for k, v in raw.items() if k != "defaults"})
        merged.pop("defaults", None)
        sft = SFTSection.from_section(merged)
        if sft.node_type is None:
            continue
        node = NodeType(**sft.node_type)
        assert node.gpus == 8 and node.gpu_memory_gib == int(launcher["labels"][GPU_MEMORY_LABEL])
        arch = sft.architecture
        ds = sft.deepspeed or {}
        estimate = memory_per_gpu(arch["parameters"], gpus=sft.num_workers, hidden_size=arch["hidden_size"],
                                  layers=arch["layers"], tokens_per_gpu=sft.per_device_batch_size * sft.max_length,
                                  stage=ds.get("stage", 3), offload_optimizer=bool(ds.get("offload_optimizer")),
                                  gpus_per_node=node.gpus, gradient_checkpointing=sft.gradient_checkpointing)
        check_fits(estimate, node)
        checked += 1
    assert checked == 3
