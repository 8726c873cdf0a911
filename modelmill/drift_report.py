"""A drift report as files a person reads (HTML, markdown) and a program reads (JSON)."""

from __future__ import annotations

import html
from pathlib import Path

from modelmill.atomic import atomic_write_json, atomic_write_text
from modelmill.drift import DriftReport, DriftTest

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>drift: {reference} -> {current}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 10px; }}
th {{ background: #f3f3f3; text-align: left; }} td.num {{ text-align: right; font-family: monospace; }}
.drift {{ background: #fde2e1; }} .verdict {{ font-size: 1.3em; font-weight: bold; }}
</style></head><body>
<h1>Drift: <code>{reference}</code> &rarr; <code>{current}</code></h1>
<p class="verdict">{verdict}</p>
<p>{n_reference} reference items, {n_current} current items; {correction} at alpha {alpha}
over {count} tests ({seconds:.1f} s).</p>
<table><tr><th>test</th><th>method</th><th>statistic</th><th>p-value</th><th>drift</th></tr>
{rows}
</table>
</body></html>
"""


def verdict(report: DriftReport) -> str:
    if not report.drifted:
        return "no drift detected"
    return "drift detected: " + ", ".join(report.drifted_tests())


def to_html(report: DriftReport) -> str:
    rows = "\n".join(_html_row(t) for t in report.tests)
    esc = html.escape
    return _PAGE.format(
        reference=esc(report.reference),
        current=esc(report.current),
        verdict=esc(verdict(report)),
        n_reference=report.n_reference,
        n_current=report.n_current,
        correction=esc(report.correction),
        alpha=report.alpha,
        count=len(report.tests),
        seconds=report.seconds,
        rows=rows,
    )


def _html_row(test: DriftTest) -> str:
    cls = ' class="drift"' if test.drifted else ""
    return (
        f"<tr{cls}><td>{html.escape(test.name)}</td><td>{html.escape(test.method)}</td>"
        f'<td class="num">{_number(test.statistic)}</td><td class="num">{test.p_value:.4g}</td>'
        f"<td>{'yes' if test.drifted else 'no'}</td></tr>"
    )


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def to_markdown(report: DriftReport, max_rows: int = 30) -> str:
    """A summary for a Prefect artifact or a terminal: verdict, then the most significant tests."""
    lines = [
        f"# drift: `{report.reference}` -> `{report.current}`",
        "",
        f"**{verdict(report)}** ({report.n_reference} vs {report.n_current} items, "
        f"{report.correction} at alpha {report.alpha})",
        "",
        "| test | method | statistic | p-value | drift |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    ranked = sorted(report.tests, key=lambda t: t.p_value)
    lines += [
        f"| {t.name} | {t.method} | {_number(t.statistic)} | {t.p_value:.4g} | {'yes' if t.drifted else 'no'} |"  # noqa: E501
        for t in ranked[:max_rows]
    ]
    if len(ranked) > max_rows:
        lines.append(f"| ... {len(ranked) - max_rows} more in drift.json | | | | |")
    return "\n".join(lines) + "\n"


def write_report(report: DriftReport, folder: str | Path) -> dict[str, Path]:
    """drift.json, drift.html and drift.md in `folder` (each written atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "drift.json", "html": folder / "drift.html", "md": folder / "drift.md"}
    atomic_write_json(paths["json"], report.to_dict())
    atomic_write_text(paths["html"], to_html(report))
    atomic_write_text(paths["md"], to_markdown(report))
    return paths
