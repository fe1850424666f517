"""The sweep report: tables, PNGs and report.html in `<results_root>/sweeps/<sweep>/` (matplotlib Agg, no Ray).

Files written (each atomically: a temporary name, then a rename; report.html last, so a reader of the page
always finds its images):
    metrics_by_model.csv / .parquet   one row per model (trends.metrics_table + neighbour_std)
    trends.csv                        every metric against capability (trends.trend_statistics)
    convergence.csv                   models x models cosine similarity of standardised utilities
    neighbour_std.csv                 per model: utility spread among it and its 4 nearest neighbours in capability,
                                      and its mean similarity to every other model
    categories.csv                    per model and outcome category: mean standardised utility, held-out accuracy
    analysis_<experiment>.csv         per analysis: headline metrics per model
    trend_<metric>.png, convergence_heatmap.png, neighbour_std.png, mean_similarity.png, categories.png,
    analysis_<experiment>_<metric>.png
    report.html
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..core.trends import HEADLINE_METRICS, metrics_table, trend_statistics, utility_convergence
from ..io.files import write_atomic
from ..io.layout import ResultsLayout
from ..io.sweep_records import load_analysis_items, load_analysis_records, load_edges, load_sweep
from . import plots
from .analysis_report import ITEM_SECTIONS, analysis_sections, category_section
from .cost_report import cost_section
from .page import SweepPage, fmt_number, render_page

__all__ = ["write_sweep_report", "build_report_files"]

# Counts and bookkeeping: reported per model, but not a trend worth a plot.
_NO_TREND = {"n_outcomes", "n_edges", "n_holdout_edges", "n_triads", "seed", "capability", "seconds_total",
             "asked_requests", "reused_requests", "failed_requests", "given_up_requests", "engine_retries",
             "fit_converged", "decided_share_chance", "verdict", "verdict_flags"}
_RATES = ["refusal_rate", "unparseable_rate", "position_bias", "position_bias_original", "position_bias_flipped"]
_N_SHOWN = 10


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return sink.getvalue().to_pybytes()


def _safe_name(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", metric)


def _trend_metrics(table: pd.DataFrame) -> list[str]:
    fixed = {"model", "status", "error", "note"}
    return [c for c in table.columns if c not in fixed | _NO_TREND and pd.api.types.is_numeric_dtype(table[c])]


def _utility_entries(records: list[dict], utilities: dict[str, pd.DataFrame], order: list[str]) -> list:
    capability = {r["model"]: r.get("capability") for r in records}
    entries = []
    for model in [m for m in order if m in utilities]:
        frame = utilities[model]
        cols = [c for c in ("description", "category", "mean", "ci_low", "ci_high") if c in frame.columns]
        ranked = frame.sort_values("mean", ascending=False, kind="stable")[cols].reset_index(drop=True)
        ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
        cap = capability.get(model)
        caption = f"capability {fmt_number(cap, 1) if cap is not None else 'n/a'}, {len(ranked)} outcomes"
        if len(ranked) <= 2 * _N_SHOWN:
            entries.append((model, caption, ranked, None))
        else:
            entries.append((model, caption, ranked.head(_N_SHOWN), ranked.tail(_N_SHOWN)))
    return entries


def _duration(seconds: float) -> str:
    """Seconds in the unit a person reads: 9.6 s, 4.2 min, 3.10 h."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _summary(sweep_name: str, records: list[dict], table: pd.DataFrame, capability_name: str, seed: int,
             n_boot: int, n_shared: object) -> list[tuple[str, str]]:
    status = Counter(r["status"] for r in records)
    seconds = table["seconds_total"].to_numpy(float)
    finished = sorted(str(r["finished_at"]) for r in records if r.get("finished_at"))
    flagged = int((table["note"] != "").sum())
    rows = [("sweep", sweep_name), ("models", str(len(records))), ("done", str(status.get("done", 0))),
            ("failed", str(status.get("failed", 0)))]
    if flagged:
        rows.append(("flagged (see Notes)", str(flagged)))
    rows += [("capability measure", capability_name),
             ("shared outcomes (convergence)", str(n_shared)),
             ("compute time, all models", _duration(np.nansum(seconds)) if np.isfinite(seconds).any() else "\u2014"),
             ("median time per model", _duration(np.nanmedian(seconds)) if np.isfinite(seconds).any() else "\u2014"),
             ("first / last model finished", f"{finished[0]} / {finished[-1]}" if finished else "\u2014"),
             ("bootstrap", f"{n_boot} resamples of models, seed {seed}, 95% percentile CIs"),
             ("generated", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))]
    return rows


def _trend_display(trends: pd.DataFrame) -> pd.DataFrame:
    def ci(value: float, low: float, high: float) -> str:
        if not math.isfinite(value):
            return "\u2014"
        return f"{value:.2f} [{low:.2f}, {high:.2f}]" if math.isfinite(low) else f"{value:.2f}"

    return pd.DataFrame({
        "metric": trends["metric"], "n": trends["n"].astype(int),
        "Pearson r [95% CI]": [ci(*v) for v in trends[["pearson_r", "pearson_ci_low", "pearson_ci_high"]].values],
        "Spearman \u03c1 [95% CI]": [ci(*v) for v in
                                     trends[["spearman_rho", "spearman_ci_low", "spearman_ci_high"]].values],
        "slope": [f"{v:.4g}" if math.isfinite(v) else "\u2014" for v in trends["slope"]],
        "intercept": [f"{v:.4g}" if math.isfinite(v) else "\u2014" for v in trends["intercept"]],
        "note": trends["note"]})


def _fmt_ci(ci: object) -> str:
    if not isinstance(ci, list) or len(ci) != 2 or not all(isinstance(v, int | float) for v in ci):
        return "\u2014"
    return f"{fmt_number(ci[0])} to {fmt_number(ci[1])}"


def elicitation_modes(records: list[dict]) -> dict[str, list[str]]:
    """Finished models by the elicitation mode their metrics were measured in ("unknown" for older records)."""
    modes: dict[str, list[str]] = {}
    for record in records:
        if record.get("status") == "done":
            mode = str((record.get("metrics") or {}).get("mode") or "unknown")
            modes.setdefault(mode, []).append(record["model"])
    return modes


def build_report_files(records: list[dict], utilities: dict[str, pd.DataFrame], sweep_name: str, *, seed: int = 0,
                       n_boot: int = 1000, mix_modes: bool = False,
                       analysis_records: dict[str, list[dict]] | None = None,
                       edges: dict[str, pd.DataFrame] | None = None,
                       analysis_items: dict[str, dict[str, pd.DataFrame]] | None = None) -> dict[str, bytes]:
    """Every report file as {file name: bytes}, computed from the loaded sweep (no I/O).

    Metrics measured in different elicitation modes (sample, logprob) are not comparable (a random agent reads 0.59
    confidence sampled and 0.50 in logprob mode): unless `mix_modes`, trends are drawn over the models of the most
    common mode only, and the page says which models were left out.
    """
    table = metrics_table(records)
    modes = elicitation_modes(records)
    mode_note = ""
    if len(modes) > 1 and not mix_modes:
        kept = max(sorted(modes), key=lambda m: len(modes[m]))
        left_out = sorted(m for mode, models in modes.items() if mode != kept for m in models)
        counts = ", ".join(f"{m}: {len(v)}" for m, v in sorted(modes.items()))
        mode_note = (f"Models were elicited in different modes ({counts}); trends are drawn over the "
                     f"{len(modes[kept])} '{kept}' models only, leaving out {', '.join(left_out)}. Set "
                     "trends.mix_modes=true (jobs.report: mix_modes=true) to draw one trend across modes.")
    else:
        left_out = []
    every_record = records + [r for rs in (analysis_records or {}).values() for r in rs]
    names = Counter(r.get("capability_name") for r in every_record if r.get("capability_name"))
    capability_name = names.most_common(1)[0][0] if names else "capability"
    # a score that is no measurement (a simulated agent's stand-in) says so on every axis it is drawn on
    stand_ins = {str(r["capability_note"]) for r in every_record
                 if r.get("capability_note") and r.get("capability") is not None}
    if stand_ins:
        capability_name += f" ({stand_ins.pop()})" if len(stand_ins) == 1 else " (some scores are stand-ins)"
    analysis_files, analysis_html = analysis_sections(analysis_records or {}, capability_name, n_boot=n_boot,
                                                      seed=seed, items=analysis_items)
    cap = dict(zip(table["model"], table["capability"], strict=True))
    similarity, spread = utility_convergence({m: u for m, u in utilities.items() if m in cap}, cap)
    table = table.merge(spread[["model", "neighbour_std", "mean_similarity"]], on="model", how="left")
    for column in ("neighbour_std", "mean_similarity"):
        table[column] = table[column].astype(float)
    metrics = _trend_metrics(table)
    trend_table = table[~table["model"].isin(left_out)].reset_index(drop=True)
    trends = trend_statistics(trend_table, metrics, n_boot=n_boot, seed=seed)
    by_metric = {row["metric"]: row for _, row in trends.iterrows()}

    files: dict[str, bytes] = {
        "metrics_by_model.csv": table.to_csv(index=False).encode(),
        "metrics_by_model.parquet": _parquet_bytes(table),
        "trends.csv": trends.to_csv(index=False).encode(),
        "convergence.csv": similarity.to_csv(index_label="model").encode(),
        "neighbour_std.csv": spread.to_csv(index=False).encode(),
    }
    headline, other = [], []
    flat = []
    for metric in [m for m in metrics if m not in ("neighbour_std", "mean_similarity")]:
        if by_metric[metric]["n"] == 0:
            continue  # no finished model reports it: nothing to draw
        drawn = (trend_table["status"] == "done") & np.isfinite(trend_table["capability"].to_numpy(float))
        values = trend_table.loc[drawn, metric].dropna().to_numpy(float)  # the points a plot would show
        if len(values) > 1 and np.ptp(values) == 0:
            flat.append(f"{metric} = {fmt_number(values[0])}")  # a flat line says nothing: named instead
            continue
        name = f"trend_{_safe_name(metric)}.png"
        files[name] = plots.trend_plot(trend_table, metric, by_metric[metric], capability_name)
        (headline if metric in HEADLINE_METRICS else other).append((name, f"{metric} vs {capability_name}"))
    headline.sort(key=lambda item: [f"trend_{m}.png" for m in HEADLINE_METRICS].index(item[0]))
    heatmap = neighbour_png = similarity_png = None
    if not similarity.empty:
        heatmap = "convergence_heatmap.png"
        files[heatmap] = plots.similarity_heatmap(similarity, cap, capability_name)
        if spread["neighbour_std"].notna().any():
            neighbour_png = "neighbour_std.png"
            files[neighbour_png] = plots.neighbour_std_plot(spread, by_metric.get("neighbour_std"), capability_name)
        if spread["mean_similarity"].notna().any() and by_metric.get("mean_similarity", {"n": 0})["n"] > 0:
            similarity_png = "mean_similarity.png"
            files[similarity_png] = plots.trend_plot(trend_table, "mean_similarity", by_metric["mean_similarity"],
                                                     capability_name)

    done = table["status"] == "done"
    # each headline metric's 95% CI from the model's metrics.json (`<metric>_ci`), shown beside it
    cis = {r["model"]: (r.get("metrics") or {}) for r in records}
    with_cis = []
    for metric in [m for m in HEADLINE_METRICS if m in table]:
        with_cis.append(metric)
        if any(isinstance(cis[m].get(f"{metric}_ci"), list) for m in table["model"]):
            table[f"{metric} 95% CI"] = [_fmt_ci(cis[m].get(f"{metric}_ci")) for m in table["model"]]
            with_cis.append(f"{metric} 95% CI")
    flags = {r["model"]: (r.get("metrics") or {}).get("verdict_flags") or [] for r in records}
    table["verdict"] = ["not meaningful: " + ", ".join(flags[m]) if flags.get(m) else "" for m in table["model"]]
    model_cols = ["model", "status", "capability", "verdict", *with_cis, "neighbour_std", "seconds_total"]
    failures = table.loc[~done, ["model", "capability", "error"]].reset_index(drop=True)
    finished_at = {r["model"]: str(r.get("finished_at") or "") for r in records}
    failures.insert(2, "finished_at", [finished_at[m] for m in failures["model"]])
    notes = [f"{m}: {n}" for m, n in zip(table["model"], table["note"], strict=True) if n]
    if mode_note:
        notes.insert(0, mode_note)
    verdicts = {r["model"]: (r.get("metrics") or {}).get("verdict") for r in records}
    notes[:0] = [f"{m}: {v}" for m, v in verdicts.items() if v]
    no_capability = [r["model"] for r in records if r.get("capability") is None]
    if no_capability:
        notes.append(f"no {names.most_common(1)[0][0] if names else 'capability'} score, so left out of every trend "
                     f"and of the capability neighbours: {', '.join(no_capability)} (their conf/model entry has "
                     "`mmlu: null`; set it to draw them)")
    if flat:
        notes.append("equal for every model, so not drawn: " + "; ".join(flat))
    if "logprob" in modes:
        notes.append("holdout_accuracy of models asked in logprob mode is the sign agreement of the fit with exact "
                     "P(A), not a sampled accuracy: it can be high for a model that prefers nothing (see verdicts)")
    reason = similarity.attrs.get("reason", "")
    page = SweepPage(
        sweep_name=sweep_name,
        summary=_summary(sweep_name, records, table, capability_name, seed, n_boot,
                         similarity.attrs.get("n_shared_outcomes", "\u2014")),
        trends=_trend_display(trends), headline_plots=headline, other_plots=other,
        heatmap=heatmap, neighbour_plot=neighbour_png, similarity_plot=similarity_png,
        convergence_note=f"No convergence analysis: {reason}." if reason else "",
        neighbours=spread,
        models=table[model_cols], rates=table.loc[done, ["model", "capability", *[c for c in _RATES if c in table]]],
        utilities=_utility_entries(records, utilities, table["model"].tolist()),
        failures=failures, notes=notes, analyses=analysis_html)
    files.update(analysis_files)
    category_files, category_html = category_section(records, utilities, edges or {}, table["model"].tolist())
    files.update(category_files)
    page.categories = category_html
    cost_files, page.cost = cost_section(every_record)
    files.update(cost_files)
    files["report.html"] = render_page(page).encode("utf-8")
    return files


def write_sweep_report(results_root: str | Path, sweep_name: str, *, seed: int = 0, n_boot: int = 1000,
                       mix_modes: bool = False) -> Path | str:
    """Load the sweep, write every report file into its directory, return the path of report.html.

    Returns a `Path` for a local results root and the URI string for a remote one (s3://...).
    """
    analysis_records = load_analysis_records(str(results_root), sweep_name)
    try:
        records, utilities = load_sweep(str(results_root), sweep_name)
    except FileNotFoundError:
        if not analysis_records:
            raise
        records, utilities = [], {}  # a sweep of analyses only
    # the experiments whose section draws from every model's items (the shared political map)
    items = {e: load_analysis_items(str(results_root), analysis_records[e]) for e in ITEM_SECTIONS
             if e in analysis_records}
    files = build_report_files(records, utilities, sweep_name, seed=seed, n_boot=n_boot, mix_modes=mix_modes,
                               analysis_records=analysis_records, edges=load_edges(str(results_root), records),
                               analysis_items=items)
    layout = ResultsLayout(str(results_root))
    fs, out_dir = layout.filesystem[0], layout.sweep_dir(sweep_name)
    html = files.pop("report.html")
    for name, data in files.items():
        write_atomic(fs, f"{out_dir}/{name}", data)
    # a plot of an earlier report whose metric is no longer drawn would otherwise sit beside the new page
    for info in fs.get_file_info(pafs.FileSelector(out_dir)):
        if info.base_name.endswith(".png") and info.base_name not in files:
            fs.delete_file(info.path)
    write_atomic(fs, f"{out_dir}/report.html", html)
    if isinstance(fs, pafs.LocalFileSystem):
        return Path(out_dir) / "report.html"
    return f"{str(results_root).rstrip('/')}/sweeps/{sweep_name}/report.html"  # as the user spelled the root
