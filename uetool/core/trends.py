"""Cross-model analysis of a sweep: per-model metric table, metric-vs-capability trends, utility convergence.

A sweep stores one JSON record per model at `<results_root>/sweeps/<sweep>/models/<model>.json`:

    {"model": key, "status": "done" | "failed", "capability": float | null, "capability_name": "mmlu",
     "results_dir": "<experiment>/<model>" (relative to results_root), "metrics": {...} | null,
     "error": str | null, "seconds": {"engine", "fit", "total"} | null, "finished_at": ISO time}

Everything here is pure numpy/scipy/pandas; plots and HTML live in `uetool.reporting`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd
from scipy.special import ndtr
from scipy.stats import rankdata

__all__ = ["HEADLINE_METRICS", "TREND_METRICS", "metrics_table", "trend_statistics", "utility_convergence",
           "category_view",
           "check_record"]

HEADLINE_METRICS = ("holdout_accuracy", "average_confidence", "log10_cycle_probability", "hard_cycle_rate",
                    "refusal_rate", "position_bias")
# The default trend set: headline metrics plus the other per-model quantities whose drift with scale is of interest.
TREND_METRICS = HEADLINE_METRICS + ("holdout_log_loss", "train_accuracy", "train_log_loss", "unparseable_rate",
                                    "position_bias_original", "position_bias_flipped", "fit_iterations")
_STATUSES = ("done", "failed")
# Bookkeeping keys of metrics.json that are not a property of the model's preferences.
_NOT_METRICS = {"model", "seed"}


def _as_float(value: object) -> float:
    """JSON null -> NaN; bools (fit_converged) count as 0/1."""
    if value is None:
        return math.nan
    return float(value)


def _is_numeric(value: object) -> bool:
    return value is None or isinstance(value, numbers.Real)


def check_record(record: object, where: str) -> dict:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a sweep record must be a JSON object, got {type(record).__name__}")
    if not isinstance(record.get("model"), str) or not record["model"]:
        raise ValueError(f"{where}: sweep record lacks a 'model' key (string)")
    if record.get("status") not in _STATUSES:
        raise ValueError(f"{where}: 'status' must be one of {list(_STATUSES)}, got {record.get('status')!r}")
    metrics = record.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise ValueError(f"{where}: 'metrics' must be an object or null, got {type(metrics).__name__}")
    return record


def metrics_table(records: list[dict]) -> pd.DataFrame:
    """One row per model: model, status, capability, every numeric metric, seconds_total, error, note.

    Sorted by capability (models without one last), then by model key. A metric column exists when some record
    reports it with a numeric value; string-valued entries of metrics.json (engine names ...) are left out.
    """
    records = [check_record(r, f"record {i} ({r.get('model') if isinstance(r, dict) else r!r})")
               for i, r in enumerate(records)]
    seen = [m for m in [k for r in records for k in (r.get("metrics") or {})] if m not in _NOT_METRICS]
    keys = list(dict.fromkeys(seen))
    numeric = [k for k in keys if all(_is_numeric((r.get("metrics") or {}).get(k)) for r in records)]
    # Known metrics first in the documented order, then any extra ones in first-seen order.
    known = [k for k in TREND_METRICS if k in numeric]
    metric_cols = known + [k for k in numeric if k not in known]
    rows = []
    for r in records:
        metrics = r.get("metrics") or {}
        seconds = r.get("seconds") or {}
        row = {"model": r["model"], "status": r["status"], "capability": _as_float(r.get("capability"))}
        row.update({k: _as_float(metrics.get(k)) for k in metric_cols})
        row["seconds_total"] = _as_float(seconds.get("total"))
        row["error"] = r.get("error") or ""
        row["note"] = r.get("note") or ""
        rows.append(row)
    columns = ["model", "status", "capability", *metric_cols, "seconds_total", "error", "note"]
    table = pd.DataFrame(rows, columns=columns)
    table = table.sort_values(["capability", "model"], na_position="last", kind="stable").reset_index(drop=True)
    return table


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of (B, n) arrays; NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=1) / denom
    # A constant row has no correlation (its centred values are rounding noise, not zero, so test the raw values);
    # rounding can push |r| a hair past 1 for perfectly (anti)correlated rows.
    flat = (np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0)
    return np.clip(np.where(flat, np.nan, r), -1.0, 1.0)


def _percentile_ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    valid = samples[np.isfinite(samples)]
    if valid.size == 0:
        return math.nan, math.nan
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(valid, [tail, 100 - tail])
    return float(low), float(high)


_TREND_COLUMNS = ["metric", "n", "pearson_r", "pearson_ci_low", "pearson_ci_high", "spearman_rho",
                  "spearman_ci_low", "spearman_ci_high", "slope", "intercept", "n_boot_valid", "note"]


def _one_trend(metric: str, x: np.ndarray, y: np.ndarray, n_boot: int, seed: int, level: float) -> dict:
    n = len(x)
    row = dict.fromkeys(_TREND_COLUMNS, math.nan) | {"metric": metric, "n": n, "n_boot_valid": 0, "note": ""}
    if n < 3:
        row["note"] = f"needs >= 3 finished models with capability and {metric}, got {n}"
        return row
    if np.ptp(x) == 0:
        row["note"] = "all models have the same capability"
        return row
    slope, intercept = np.polyfit(x, y, 1)
    row["slope"], row["intercept"] = float(slope), float(intercept)
    if np.ptp(y) == 0:
        row["note"] = f"{metric} is the same for every model (correlation undefined)"
        return row
    row["pearson_r"] = float(_rowwise_pearson(x[None], y[None])[0])
    row["spearman_rho"] = float(_rowwise_pearson(rankdata(x)[None], rankdata(y)[None])[0])
    # A fresh generator per metric: the resamples of a metric do not depend on which other metrics are analysed.
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    xb, yb = x[idx], y[idx]
    boot_r = _rowwise_pearson(xb, yb)
    boot_rho = _rowwise_pearson(rankdata(xb, axis=1), rankdata(yb, axis=1))
    row["pearson_ci_low"], row["pearson_ci_high"] = _percentile_ci(boot_r, level)
    row["spearman_ci_low"], row["spearman_ci_high"] = _percentile_ci(boot_rho, level)
    # Resamples that drew a constant column have no correlation; the CI uses the others, and says how many.
    row["n_boot_valid"] = int(np.isfinite(boot_r).sum())
    if row["n_boot_valid"] < n_boot:
        row["note"] = f"{n_boot - row['n_boot_valid']} of {n_boot} resamples had no spread and were dropped"
    return row


def trend_statistics(table: pd.DataFrame, metrics: tuple[str, ...] | list[str] | None = None, n_boot: int = 1000,
                     seed: int = 0, level: float = 0.95, capability: str = "capability") -> pd.DataFrame:
    """Each metric against capability over finished models (status "done", finite capability and metric).

    Per metric: n, Pearson r and Spearman rho with seeded percentile-bootstrap CIs (models resampled with
    replacement, all `n_boot` replicates at once), and the least-squares line metric = intercept + slope * capability.
    Rows with fewer than 3 models, or no spread, hold NaN and say why in `note`.
    `metrics=None` takes the TREND_METRICS present in the table.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    for col in ("status", capability):
        if col not in table.columns:
            raise ValueError(f"metrics table lacks the column {col!r}; columns: {list(table.columns)}")
    if metrics is None:
        metrics = [m for m in TREND_METRICS if m in table.columns]
    missing = [m for m in metrics if m not in table.columns]
    if missing:
        raise ValueError(f"unknown metrics {missing}; the table has {list(table.columns)}")
    done = table[table["status"] == "done"]
    rows = []
    for metric in metrics:
        pair = done[[capability, metric]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        pair = pair[np.isfinite(pair).all(axis=1)]
        rows.append(_one_trend(metric, pair[:, 0], pair[:, 1], n_boot, seed, level))
    return pd.DataFrame(rows, columns=_TREND_COLUMNS)


def _empty_convergence(reason: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    similarity = pd.DataFrame(dtype=float)
    spread = pd.DataFrame(columns=["model", "capability", "neighbour_std", "mean_similarity", "n_neighbours",
                                   "neighbours"])
    for frame in (similarity, spread):
        frame.attrs["reason"] = reason
    return similarity, spread


def utility_convergence(utilities: dict[str, pd.DataFrame], capability: dict[str, float | None],
                        n_neighbours: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Do models' utilities converge with scale? (METHOD.md section 4.)

    Utility vectors are aligned on the outcome ids every model shares and standardised per model (mean 0, std 1:
    Thurstonian utilities have an arbitrary scale), so cosine similarity equals their Pearson correlation.
    Returns
      similarity: models x models cosine similarity, models ordered by capability (unknown capability last);
      neighbour_std: per model, the element-wise std (over the model and its `n_neighbours` nearest models in
        capability) of the standardised utilities, averaged over outcomes; models without a capability get NaN
        and are nobody's neighbour; and `mean_similarity`, the model's mean similarity to every other model
        (EXPERIMENTS.md s.15: plotted against capability, it rises when utilities converge with scale).
    With fewer than 2 models or 2 shared outcomes both frames are empty and `frame.attrs["reason"]` says why.
    """
    if n_neighbours < 1:
        raise ValueError(f"n_neighbours must be >= 1, got {n_neighbours}")
    lacking = sorted(set(utilities) - set(capability))
    if lacking:
        raise ValueError(f"no capability entry for models {lacking}")
    if len(utilities) < 2:
        return _empty_convergence(f"needs >= 2 models with utilities, got {len(utilities)}")
    vectors = {}
    for model, frame in utilities.items():
        if not {"id", "mean"} <= set(frame.columns):
            raise ValueError(f"utilities of {model!r} need columns 'id' and 'mean'; found {list(frame.columns)}")
        ids = frame["id"].astype(str)
        if ids.duplicated().any():
            raise ValueError(f"utilities of {model!r} repeat outcome ids {sorted(set(ids[ids.duplicated()]))[:5]}")
        vectors[model] = pd.Series(frame["mean"].to_numpy(dtype=float), index=ids.to_numpy())
    shared = None
    for series in vectors.values():
        shared = series.index if shared is None else shared.intersection(series.index, sort=False)
    if len(shared) < 2:
        return _empty_convergence(f"the models share {len(shared)} outcome ids; needs >= 2")
    cap = {m: _as_float(capability[m]) for m in vectors}
    order = sorted(vectors, key=lambda m: (not math.isfinite(cap[m]), cap[m] if math.isfinite(cap[m]) else 0.0, m))
    matrix = np.stack([vectors[m].loc[shared].to_numpy() for m in order])
    centred = matrix - matrix.mean(axis=1, keepdims=True)
    scale = centred.std(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        # A constant utility vector (or NaN utilities) has no direction: its similarities are NaN.
        z = np.where(scale > 0, centred / scale, np.nan)
        unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = np.clip(unit @ unit.T, -1.0, 1.0)
    similarity = pd.DataFrame(sim, index=pd.Index(order, name="model"), columns=order)
    similarity.attrs["n_shared_outcomes"] = len(shared)

    caps = np.array([cap[m] for m in order])
    known = np.flatnonzero(np.isfinite(caps))
    rows = []
    for i, model in enumerate(order):
        others_sim = np.delete(sim[i], i)
        mean_sim = float(np.nanmean(others_sim)) if np.isfinite(others_sim).any() else math.nan
        row = {"model": model, "capability": caps[i], "neighbour_std": math.nan, "mean_similarity": mean_sim,
               "n_neighbours": 0, "neighbours": ""}
        if np.isfinite(caps[i]) and len(known) > 1:
            others = known[known != i]
            # Stable sort: equal distances resolve to the lower-capability model first.
            nearest = others[np.argsort(np.abs(caps[others] - caps[i]), kind="stable")[:n_neighbours]]
            group = z[np.concatenate([[i], nearest])]
            row.update(neighbour_std=float(np.nanmean(group.std(axis=0))) if np.isfinite(group).any() else math.nan,
                       n_neighbours=len(nearest), neighbours=", ".join(order[j] for j in nearest))
        rows.append(row)
    spread = pd.DataFrame(rows, columns=["model", "capability", "neighbour_std", "mean_similarity", "n_neighbours",
                                         "neighbours"])
    spread.attrs["n_shared_outcomes"] = len(shared)
    return similarity, spread


def category_view(utilities: pd.DataFrame, edges: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per outcome category of one model: n outcomes, the mean and spread of its standardised utilities, and the
    coherence of its preferences there (EXPERIMENTS.md s.15).

    `holdout_accuracy` is the fit's accuracy on the held-out edges with an outcome in the category (the fit's
    P(a over b) >= 0.5 against the observed share >= 0.5), `n_holdout_edges` how many there were: NaN where
    `edges` is not given or none touches the category. Outcomes without a category are "uncategorised".
    """
    if not {"mean", "category"} <= set(utilities.columns):
        raise ValueError(f"utilities need 'mean' and 'category'; found {list(utilities.columns)}")
    mean = utilities["mean"].to_numpy(float)
    z = (mean - mean.mean()) / mean.std() if mean.std() > 0 else np.zeros_like(mean)
    category = utilities["category"].fillna("").replace("", "uncategorised").to_numpy(str)
    frame = pd.DataFrame({"category": category, "z": z})
    out = frame.groupby("category", sort=True)["z"].agg(n_outcomes="size", mean_utility="mean",
                                                      std_utility="std").reset_index()
    out["holdout_accuracy"], out["n_holdout_edges"] = math.nan, 0
    if edges is not None and {"a", "b", "p_a", "split"} <= set(edges.columns) and "variance" in utilities:
        held = edges[edges["split"] == "holdout"]
        a, b = held["a"].to_numpy(int), held["b"].to_numpy(int)
        var = utilities["variance"].to_numpy(float)
        p_fit = ndtr((mean[a] - mean[b]) / np.sqrt(var[a] + var[b]))
        observed = held["p_a"].to_numpy(float)
        valid = np.isfinite(observed)
        correct = (p_fit >= 0.5) == (observed >= 0.5)
        for i, name in enumerate(out["category"]):
            touches = valid & ((category[a] == name) | (category[b] == name))
            if touches.any():
                out.loc[i, "holdout_accuracy"] = float(correct[touches].mean())
                out.loc[i, "n_holdout_edges"] = int(touches.sum())
    return out.sort_values("mean_utility", ascending=False).reset_index(drop=True)
