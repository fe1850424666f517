"""SFT data as a Hugging Face `datasets` dataset in Parquet, rendered with the chat template of the model being tuned.

Rows come from `core.assembly.sft_rows` (TRL's conversational `messages`). Each is rendered once here with the
tokenizer's chat template, so the files say exactly what the model is trained on: `prompt` is the conversation up to
and including the assistant turn's opening (`add_generation_prompt=True`), `completion` is the rest of the rendered
conversation (the label and the template's end-of-turn text), and `text` the two joined. Training uses `prompt` and
`completion` (loss on the completion only); `messages` keeps the conversation for anyone re-rendering it for
another model. The split is by question (see `core.assembly.split_by_question`).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from ..io.files import resolve_filesystem

__all__ = ["render_rows", "write_split", "read_split"]


def render_rows(rows: list[dict], tokenizer) -> list[dict]:
    """Adds `prompt`, `completion` and `text` to each row, rendered with `tokenizer`'s chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the model to tune has no chat template; SFT data is rendered with it (give the tokenizer "
                         "a chat_template)")
    cache: dict = {}
    out = []
    for row in rows:
        messages = row["messages"]
        key = tuple((m["role"], m["content"]) for m in messages)
        if key not in cache:
            prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
            full = tokenizer.apply_chat_template(messages, tokenize=False)
            if not full.startswith(prompt):
                raise ValueError("the chat template renders the prompt differently when the assistant turn follows; "
                                 "cannot split prompt and completion for completion-only training")
            cache[key] = (prompt, full[len(prompt):])
        prompt, completion = cache[key]
        out.append({**row, "label": messages[-1]["content"], "prompt": prompt, "completion": completion,
                    "text": prompt + completion})
    return out


def write_split(rows: list[dict], path: str) -> int:
    """Writes rendered rows as one Parquet file (readable by `datasets.load_dataset("parquet", ...)` and pandas);
    `path` may be any pyarrow filesystem URI. Returns the number of rows."""
    import datasets

    table = datasets.Dataset.from_list(rows).data.table if rows else pa.table({})
    fs, local = resolve_filesystem(path)
    fs.create_dir(local.rsplit("/", 1)[0], recursive=True)
    partial = local + ".partial"
    pq.write_table(table, partial, filesystem=fs)
    fs.move(partial, local)
    return table.num_rows


def read_split(path: str):
    """The split as a `datasets.Dataset`."""
    import datasets

    fs, local = resolve_filesystem(path)
    return datasets.Dataset(pq.read_table(local, filesystem=fs))
