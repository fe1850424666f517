"""Supervised fine-tuning as a Ray Train job: TRL's SFTTrainer with DeepSpeed ZeRO inside a TorchTrainer.

Every worker reads the training split (Parquet, any pyarrow filesystem URI), loads the model under the ZeRO config
(ZeRO-3 partitions weights, gradients and optimizer state over the workers) and trains on the completion tokens only
(the prompt is the chat-templated comparison, the completion the assembly's label and the end-of-turn tokens).
`RayTrainReportCallback` hands each Hugging Face checkpoint (all ranks' ZeRO shards and the trainer state) to Ray
Train's storage under the results root; when a worker dies, Ray Train restarts the worker group (up to
`max_failures` times) and the loop resumes from the latest checkpoint: the trainer restores weights, optimizer,
scheduler, RNG state and the position in the epoch, so the resumed run ends where an uninterrupted one would. At the
end all ranks gather the 16-bit weights (`stage3_gather_16bit_weights_on_model_save`) and rank 0 writes a loadable
Hugging Face folder (a LoRA adapter is merged into the base weights afterwards), the training history (loss per
step, tokens/s per worker) and copies them to the destination.

On CPUs (`use_gpu=false`) the same code runs with gloo: DeepSpeed is initialised on gloo before the trainer starts,
and `use_cpu`/no bf16 are the only switches; on GPUs they come from config, not from code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field

__all__ = ["SFTOptions", "LoraOptions", "train_sft", "TrainedModel", "HISTORY_FILE", "FAULT_ENV"]

HISTORY_FILE = "train_history.json"
# test hook for the resume path, read from the driver's environment: "<step>:<marker file>" makes rank 1 die
# (os._exit) at that step once, the marker recording that it did; a real crash of a worker process, which Ray Train
# answers by restarting the group
FAULT_ENV = "UETOOL_SFT_KILL_AT_STEP"


@dataclass(frozen=True)
class LoraOptions:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class SFTOptions:
    """What the SFT job needs besides the data and the model (the `sft` config section, typed)."""

    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    epochs: float = 2.0
    learning_rate: float = 1e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 512
    bf16: bool = False
    gradient_checkpointing: bool = False
    save_steps: int = 20
    checkpoints_to_keep: int = 2
    max_failures: int = 2
    seed: int = 0
    report_to: tuple[str, ...] = ()
    deepspeed: dict = field(default_factory=dict)  # a config from ds_config.deepspeed_config; {} = no DeepSpeed
    lora: LoraOptions | None = None


@dataclass(frozen=True)
class TrainedModel:
    path: str  # the tuned Hugging Face folder (merged weights and tokenizer)
    history: dict  # steps, loss, tokens/s per worker, wall time (also in HISTORY_FILE next to the weights)
    checkpoint_path: str | None  # Ray Train's latest checkpoint


class _History:
    """A TrainerCallback (built lazily so that importing this module needs no transformers): loss per logging
    step from the trainer's own log (restored on resume), and tokens/s per worker measured in this attempt."""

    def __new__(cls, world_size: int, rank: int, fault: str | None = None):
        from transformers import TrainerCallback

        class History(TrainerCallback):
            def __init__(self) -> None:
                self.world_size, self.rank = world_size, rank
                self.rates: list[dict] = []
                self._last = None  # (time, num_tokens) at the previous log

            def on_train_begin(self, args, state, control, **kwargs):
                self._last = (time.perf_counter(), None)

            def on_log(self, args, state, control, logs=None, **kwargs):
                logs = logs or {}
                now, tokens = time.perf_counter(), logs.get("num_tokens")
                if tokens is not None and self._last is not None and self._last[1] is not None:
                    seconds = now - self._last[0]
                    if seconds > 0:
                        per_worker = (tokens - self._last[1]) / seconds / self.world_size
                        self.rates.append({"step": state.global_step, "tokens_per_s_per_worker": per_worker})
                if tokens is not None:
                    self._last = (now, tokens)

            def on_step_end(self, args, state, control, **kwargs):
                if fault and self.rank == 1:
                    step, marker = fault.split(":", 1)
                    if state.global_step == int(step) and not os.path.exists(marker):
                        with open(marker, "w") as f:
                            f.write(str(state.global_step))
                        os._exit(1)

        return History()


def _read_split(path: str):
    import datasets
    import pyarrow.parquet as pq

    from ..io.files import resolve_filesystem

    fs, local = resolve_filesystem(path)
    table = pq.read_table(local, filesystem=fs, columns=["prompt", "completion"])
    return datasets.Dataset(table)


def _history(state, rates: list[dict], world_size: int) -> dict:
    losses = [(e["step"], e["loss"]) for e in state.log_history if "loss" in e and "step" in e]
    summary = next((e for e in reversed(state.log_history) if "train_runtime" in e), {})
    return {"step": [s for s, _ in losses], "loss": [float(v) for _, v in losses], "throughput": rates,
            "global_step": int(state.global_step), "world_size": world_size,
            "train_runtime_s": summary.get("train_runtime"), "num_tokens": state.log_history[-1].get("num_tokens")
            if state.log_history else None}


def _train_loop(config: dict) -> None:
    import ray.train
    import torch
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    options = config["options"]
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(options["cpus_per_worker"])))
    if options["deepspeed"] and not options["use_gpu"]:
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")  # DeepSpeed would pick a GPU backend otherwise
    tokenizer = AutoTokenizer.from_pretrained(config["model_path"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    work = tempfile.mkdtemp(prefix="uetool-sft-")
    args = SFTConfig(
        output_dir=os.path.join(work, "trainer"), num_train_epochs=options["epochs"],
        learning_rate=options["learning_rate"], lr_scheduler_type=options["lr_scheduler"],
        warmup_steps=options["warmup_ratio"], weight_decay=options["weight_decay"],
        per_device_train_batch_size=options["per_device_batch_size"],
        gradient_accumulation_steps=options["gradient_accumulation_steps"], max_length=options["max_length"],
        bf16=options["bf16"], use_cpu=not options["use_gpu"], gradient_checkpointing=options["gradient_checkpointing"],
        logging_steps=1, save_strategy="steps", save_steps=options["save_steps"], save_only_model=False,
        # the trainer's own copy of each checkpoint is scratch once Ray Train has stored it: keep only the newest
        # (a full ZeRO-3 checkpoint is 16 bytes per parameter)
        save_total_limit=1,
        seed=options["seed"], data_seed=options["seed"], report_to=list(options["report_to"]) or "none",
        deepspeed=options["deepspeed"] or None, completion_only_loss=True, dataset_num_proc=None,
        model_init_kwargs={"dtype": torch.bfloat16 if options["bf16"] else torch.float32},
        disable_tqdm=rank != 0, dataloader_num_workers=0, remove_unused_columns=True)
    peft_config = None
    if options["lora"]:
        from peft import LoraConfig

        lora = options["lora"]
        peft_config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                 target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM")
    history = _History(world_size, rank, config.get("fault"))
    trainer = SFTTrainer(model=config["model_path"], args=args, train_dataset=_read_split(config["train_path"]),
                         processing_class=tokenizer, peft_config=peft_config, callbacks=[history])
    trainer.add_callback(RayTrainReportCallback())
    trainer = prepare_trainer(trainer)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.train(resume_from_checkpoint=os.path.join(directory, RayTrainReportCallback.CHECKPOINT_NAME))
    else:
        trainer.train()
    final = os.path.join(work, "final")
    trainer.save_model(final)  # every rank: ZeRO-3 gathers the partitioned weights; rank 0 writes them
    if rank == 0:
        tokenizer.save_pretrained(final)
        with open(os.path.join(final, HISTORY_FILE), "w") as f:
            json.dump(_history(trainer.state, history.rates, world_size), f)
        _copy_out(final, config["staging_path"])
    shutil.rmtree(work, ignore_errors=True)


def _copy_out(local: str, destination: str) -> None:
    import pyarrow.fs as pafs

    from ..io.files import resolve_filesystem

    fs, path = resolve_filesystem(destination)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(local, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def _merge_lora(base_path: str, adapter_path: str, out_path: str) -> None:
    """Base weights plus the trained adapter, merged into one plain model folder that every engine can serve."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter_path).merge_and_unload()
    merged.save_pretrained(out_path)
    AutoTokenizer.from_pretrained(adapter_path).save_pretrained(out_path)
    shutil.copy(os.path.join(adapter_path, HISTORY_FILE), os.path.join(out_path, HISTORY_FILE))


def train_sft(model_path: str, train_path: str, output_path: str, options: SFTOptions, *, storage_path: str,
              run_name: str) -> TrainedModel:
    """Trains `model_path` on the Parquet split at `train_path` and leaves the tuned folder at `output_path` (local).

    Ray Train keeps its checkpoints under `storage_path/run_name` (a local path or any pyarrow URI); a run started
    again with the same name resumes from the latest of them.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    raw = asdict(options)
    staging = output_path + (".adapter" if options.lora else "") + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"options": raw, "model_path": model_path, "train_path": train_path,
                           "staging_path": staging, "fault": os.environ.get(FAULT_ENV)},
        torch_config=TorchConfig(backend="nccl" if options.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=options.num_workers, use_gpu=options.use_gpu,
                                     resources_per_worker={"CPU": options.cpus_per_worker}),
        run_config=RunConfig(name=run_name, storage_path=storage_path,
                             failure_config=FailureConfig(max_failures=options.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=options.checkpoints_to_keep)),
    )
    result = trainer.fit()
    if options.lora:
        merged = output_path + ".partial"
        shutil.rmtree(merged, ignore_errors=True)
        import ray

        ray.get(ray.remote(num_cpus=1)(_merge_lora).remote(model_path, staging, merged))
        shutil.rmtree(staging, ignore_errors=True)
        staging = merged
    shutil.rmtree(output_path, ignore_errors=True)
    os.replace(staging, output_path)
    with open(os.path.join(output_path, HISTORY_FILE)) as f:
        history = json.load(f)
    checkpoint = result.checkpoint.path if result.checkpoint is not None else None
    return TrainedModel(path=output_path, history=history, checkpoint_path=checkpoint)
