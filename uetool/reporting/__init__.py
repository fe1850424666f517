"""Reports for people (matplotlib, HTML; no Ray): the cross-model sweep report.

`write_sweep_report(results_root, sweep_name)` writes report.html, its PNGs and tables into the sweep directory.
"""

from .sweep_report import build_report_files, write_sweep_report

__all__ = ["write_sweep_report", "build_report_files"]
