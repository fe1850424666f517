"""DeepSpeed configs for SFT and the memory arithmetic that says whether a node type can hold a model.

`deepspeed_config` builds the ZeRO config that TRL's SFTTrainer (through accelerate) takes as a dict: batch sizes,
learning rate and precision stay "auto" so the trainer's arguments fill them, and only what ZeRO itself needs is set
here (stage, CPU offload of parameters and optimizer state, and gathering 16-bit weights on save so the tuned model
comes out as a loadable Hugging Face folder rather than shards).

`memory_per_gpu` is the arithmetic behind the README's table and the 70B dry run: mixed-precision Adam keeps, per
parameter, 2 bytes of 16-bit weights, 2 of 16-bit gradients and 12 of optimizer state (fp32 master weights, momentum
and variance): 16 bytes in all (the ZeRO paper's "2 + 2 + K" with K = 12). ZeRO-3 partitions all three over the GPUs;
CPU offload moves the optimizer state (and, with parameter offload, the 16-bit weights) to host memory. Activations
with gradient checkpointing keep one hidden-state tensor per layer and sequence position
(2 bytes x hidden x layers x tokens per GPU), plus one layer's full working set while it is recomputed. A LoRA run
trains a small share of the parameters, so gradients and optimizer state shrink to that share. Pure Python: no torch,
no DeepSpeed import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["deepspeed_config", "MemoryEstimate", "memory_per_gpu", "NodeType", "check_fits", "GIB"]

GIB = 1024**3
BYTES_WEIGHT_16, BYTES_GRAD_16, BYTES_ADAM_STATE = 2, 2, 12


def deepspeed_config(stage: int = 3, *, offload_optimizer: bool = False, offload_parameters: bool = False,
                     gather_weights_on_save: bool = True) -> dict:
    """A ZeRO config dict with "auto" values for what the trainer's arguments decide."""
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"sft.deepspeed.stage must be 0, 1, 2 or 3, got {stage}")
    if offload_parameters and stage != 3:
        raise ValueError("sft.deepspeed.offload_parameters needs ZeRO stage 3 (only stage 3 partitions parameters)")
    zero: dict = {"stage": stage}
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if offload_parameters:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if stage == 3:
        zero.update({"overlap_comm": True, "contiguous_gradients": True, "reduce_bucket_size": "auto",
                     "stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                     "stage3_gather_16bit_weights_on_model_save": bool(gather_weights_on_save)})
    return {"zero_optimization": zero, "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
            "gradient_clipping": "auto", "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto", "steps_per_print": 10**9, "wall_clock_breakdown": False}


@dataclass(frozen=True)
class NodeType:
    """A training node type: GPUs per node, memory per GPU and host memory per node (GiB)."""

    name: str
    gpus: int
    gpu_memory_gib: float
    host_memory_gib: float


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    trainable_parameters: int
    gpus: int
    weights_gib: float  # 16-bit weights held on each GPU
    gradients_gib: float
    optimizer_gib: float
    activations_gib: float
    gpu_total_gib: float
    host_per_node_gib: float  # what offload puts in each node's host memory

    def to_dict(self) -> dict:
        return asdict(self)


def memory_per_gpu(parameters: int, *, gpus: int, hidden_size: int, layers: int, tokens_per_gpu: int,
                   stage: int = 3, offload_optimizer: bool = False, offload_parameters: bool = False,
                   trainable_share: float = 1.0, gpus_per_node: int = 8,
                   gradient_checkpointing: bool = True) -> MemoryEstimate:
    """Per-GPU memory of mixed-precision Adam under ZeRO `stage` (see the module docstring for the arithmetic)."""
    if parameters <= 0 or gpus <= 0 or not 0 < trainable_share <= 1:
        raise ValueError("parameters and gpus must be positive and 0 < trainable_share <= 1")
    trainable = int(parameters * trainable_share)
    shard_weights = gpus if stage == 3 else 1
    shard_grads = gpus if stage >= 2 else 1
    shard_optim = gpus if stage >= 1 else 1
    weights = BYTES_WEIGHT_16 * parameters / shard_weights
    gradients = BYTES_GRAD_16 * trainable / shard_grads
    optimizer = BYTES_ADAM_STATE * trainable / shard_optim
    host = 0.0
    nodes = max(1, -(-gpus // gpus_per_node))
    if offload_optimizer:
        host += optimizer * gpus / nodes
        optimizer = 0.0
    if offload_parameters:
        host += weights * gpus / nodes
        weights = 0.0
    # checkpointed activations: one 16-bit hidden state per layer and token, plus one layer's working set
    # (about 16 hidden-sized tensors per token while attention and the MLP are recomputed)
    per_layer = 2 * hidden_size * tokens_per_gpu
    activations = per_layer * (layers if gradient_checkpointing else 16 * layers) + 16 * per_layer
    # a ZeRO-3 GPU also materialises the largest gathered layer while it computes (the prefetch bucket)
    gathered = 2 * parameters / max(1, layers) * 2 if stage == 3 else 0.0
    total = weights + gradients + optimizer + activations + gathered
    return MemoryEstimate(parameters=parameters, trainable_parameters=trainable, gpus=gpus,
                          weights_gib=weights / GIB, gradients_gib=gradients / GIB, optimizer_gib=optimizer / GIB,
                          activations_gib=activations / GIB, gpu_total_gib=total / GIB, host_per_node_gib=host / GIB)


def check_fits(estimate: MemoryEstimate, node: NodeType, *, headroom: float = 0.9) -> None:
    """Raises a ValueError naming the shortfall when `node` cannot hold `estimate` (using `headroom` of memory:
    CUDA context, NCCL buffers and fragmentation take the rest)."""
    nodes = -(-estimate.gpus // node.gpus)
    problems = []
    if estimate.gpu_total_gib > headroom * node.gpu_memory_gib:
        problems.append(f"each GPU needs {estimate.gpu_total_gib:.1f} GiB (weights {estimate.weights_gib:.1f}, "
                        f"gradients {estimate.gradients_gib:.1f}, optimizer {estimate.optimizer_gib:.1f}, "
                        f"activations {estimate.activations_gib:.1f}) but {node.name} has "
                        f"{node.gpu_memory_gib:g} GiB per GPU ({headroom:.0%} usable)")
    if estimate.host_per_node_gib > headroom * node.host_memory_gib:
        problems.append(f"CPU offload needs {estimate.host_per_node_gib:.0f} GiB of host memory per node but "
                        f"{node.name} has {node.host_memory_gib:g} GiB ({headroom:.0%} usable)")
    if problems:
        raise ValueError(f"{node.name} x {nodes} cannot train {estimate.parameters / 1e9:.1f}B parameters on "
                         f"{estimate.gpus} GPUs: " + "; ".join(problems))
