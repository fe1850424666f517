import json

import pandas as pd
import pytest

from uetool.core.outcomes import OutcomeError, builtin_outcome_sets, load_outcomes


def test_builtin_sets():
    assert {"main", "quickstart"} <= set(builtin_outcome_sets())
    main = load_outcomes("main")
    assert 480 <= len(main) <= 520
    assert len(set(main.categories)) == 30
    quick = load_outcomes("quickstart")
    assert 35 <= len(quick) <= 45
    assert set(quick.descriptions) <= set(main.descriptions)


def test_flat_and_hierarchical_json(tmp_path):
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps(["x happens.", "y happens.", {"id": "z1", "description": "z happens."}]))
    s = load_outcomes(flat)
    assert s.descriptions == ("x happens.", "y happens.", "z happens.")
    assert s.ids == ("0", "1", "z1")
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"money": ["gain $1.", "gain $2."], "world": {"peace": ["peace treaty."]}}))
    s = load_outcomes(nested)
    assert s.categories == ("money", "money", "world/peace")


def test_tabular_formats(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b"], "description": ["one.", "two."], "category": ["c1", "c2"]})
    frame.to_csv(tmp_path / "o.csv", index=False)
    frame.to_parquet(tmp_path / "o.parquet")
    (tmp_path / "o.jsonl").write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")))
    for name in ("o.csv", "o.parquet", "o.jsonl"):
        s = load_outcomes(tmp_path / name)
        assert s.ids == ("a", "b") and s.categories == ("c1", "c2")


@pytest.mark.parametrize(("content", "suffix", "message"), [
    (json.dumps(["only one."]), ".json", "at least 2"),
    (json.dumps(["a.", "a."]), ".json", "duplicate description"),
    (json.dumps(["a.", "  "]), ".json", "entry 1: description is empty"),
    (json.dumps(["a.", 3]), ".json", "entry 1 must be a string"),
    (json.dumps({"cat": "not a list"}), ".json", "category 'cat'"),
    ("{not json", ".json", "not valid JSON"),
    ("text,id\nx,1\ny,2\n", ".csv", "missing required column 'description'"),
    ('{"description": "x."}\nnope\n', ".jsonl", "line 2"),
    ("whatever", ".txt", "unsupported outcome file type"),
])
def test_bad_files_name_the_problem(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(OutcomeError, match=message) as err:
        load_outcomes(path)
    assert str(path) in str(err.value)


def test_unknown_name_lists_builtins():
    with pytest.raises(OutcomeError, match="built-in sets"):
        load_outcomes("no_such_set")
