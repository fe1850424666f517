"""A capability check before and after utility control, so that tuning cannot silently break the model.

Two numbers on data the project writes (`uetool/data/control/capability.json`): the mean token loss on held-out
plain text (it rises when tuning damages language modelling), and accuracy on two-option questions asked in the
chat template, scored by which label ("A" or "B") the model gives more probability as the first reply token (chance
is 0.5; the correct option's position alternates, seeded, so a model that always says "A" scores 0.5).
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np

__all__ = ["capability_data", "capability_check", "mc_prompts"]


def capability_data() -> dict:
    return json.loads(resources.files("uetool.data").joinpath("control/capability.json").read_text())


def mc_prompts(data: dict, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """(prompts, index of the correct label: 0 = A, 1 = B) with the correct option's position drawn by `seed`."""
    rng = np.random.default_rng([seed, 127])
    prompts, correct = [], []
    for item in data["multiple_choice"]:
        first = int(rng.integers(0, 2))
        options = (item["correct"], item["wrong"]) if first == 0 else (item["wrong"], item["correct"])
        prompts.append(f"{item['question']}\n\nOption A: {options[0]}\nOption B: {options[1]}\n\n"
                       'Please respond with only "A" or "B".')
        correct.append(first)
    return prompts, np.array(correct)


def capability_check(model_path: str, *, seed: int = 0, num_threads: int = 1) -> dict:
    """{'text_loss', 'mc_accuracy', 'n_text', 'n_mc'} of the model at `model_path` (transformers, CPU or GPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(max(1, num_threads))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(device).eval()
    data = capability_data()
    losses, tokens = 0.0, 0
    with torch.no_grad():
        for text in data["text"]:
            ids = tokenizer(text, return_tensors="pt").input_ids.to(device)
            if ids.shape[1] < 2:
                continue
            out = model(ids, labels=ids)
            n = ids.shape[1] - 1
            losses += float(out.loss) * n
            tokens += n
        prompts, correct = mc_prompts(data, seed)
        label_ids = [tokenizer.encode(label, add_special_tokens=False)[0] for label in ("A", "B")]
        hits = []
        for prompt, right in zip(prompts, correct.tolist(), strict=True):
            rendered = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                     add_generation_prompt=True)
            ids = tokenizer(rendered, return_tensors="pt", add_special_tokens=False).input_ids.to(device)
            logits = model(ids).logits[0, -1]
            choice = int(logits[label_ids[1]] > logits[label_ids[0]])
            hits.append(choice == right)
    return {"text_loss": losses / max(tokens, 1), "mc_accuracy": float(np.mean(hits)), "n_text": len(data["text"]),
            "n_mc": len(hits)}
