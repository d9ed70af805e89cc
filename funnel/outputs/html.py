"""What the HTML outputs share: one self-contained page, sortable tables, atomic writes.

`funnel report` (funnel/outputs/html_report.py) and `funnel docs` (funnel/outputs/html_docs.py) each write
one HTML file that opens offline: every style and script is inline, and the page's
Content-Security-Policy forbids the browser to fetch anything, so a chart library that
tried to reach a CDN would fail loudly (a console error) instead of leaking a request.
Every value from the build or the export is escaped here: an owner named
`<script>...` is text, never markup.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from funnel import atomic
from funnel.errors import FunnelError

# The page may run its own inline scripts and styles and show inline images; nothing else,
# in particular no request to any server (connect-src, font-src, script-src from URLs).
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:"

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1f2933; }
main { max-width: 1300px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 24px; margin: 8px 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid #d9dee3; }
h3 { font-size: 15px; margin: 20px 0 6px; }
.note { color: #52606d; margin: 4px 0 10px; }
nav a { margin-right: 14px; }
table { border-collapse: collapse; margin: 6px 0 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e4e7eb; text-align: left; vertical-align: top; }
td[data-v] { text-align: right; white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; background: #f5f7fa; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
.scroll { max-height: 420px; overflow: auto; display: inline-block; border: 1px solid #e4e7eb; }
.scroll table { margin: 0; }
.PASS { color: #1e7d32; } .WARN { color: #a15c00; font-weight: 600; } .ERROR { color: #b00020; font-weight: 700; }
pre { background: #f5f7fa; padding: 8px 12px; overflow: auto; font-size: 12.5px; max-height: 420px; }
code { font-size: 12.5px; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dl.facts dt { color: #52606d; } dl.facts dd { margin: 0; }
tr.incomplete td { background: #fdf1e8; font-style: italic; }
.incomplete-note { color: #a15c00; font-weight: 600; }
.caption { color: #7b8794; font-size: 12px; font-weight: normal; margin-left: 8px; }
.pickers { margin: 8px 0 4px; } .pickers label { margin-right: 18px; }
.beside { display: flex; gap: 12px; align-items: flex-start; } .beside .wide { flex: 3; min-width: 0; }
.beside .narrow { flex: 1.3; min-width: 0; }
"""

# Click a header to sort by that column (again: the other way). Cells with data-v sort
# as numbers, empty data-v (no value) last; the others as text.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0];
      var key = function (row) {
        var cell = row.cells[column], v = cell.getAttribute("data-v");
        return v === null ? cell.textContent : (v === "" ? null : Number(v));
      };
      var rows = Array.prototype.slice.call(body.rows).map(function (r, i) { return [key(r), i, r]; });
      rows.sort(function (a, b) {
        if (a[0] === b[0]) return a[1] - b[1];
        if (a[0] === null) return 1;
        if (b[0] === null) return -1;
        var order = typeof a[0] === "number" && typeof b[0] === "number" ? a[0] - b[0] : String(a[0]).localeCompare(String(b[0]));
        return ascending ? order : -order;
      });
      rows.forEach(function (r) { body.appendChild(r[2]); });
    });
  });
});
"""


def esc(value: Any) -> str:
    """Text for HTML content or a quoted attribute."""
    return html.escape(str(value), quote=True)


def page(title: str, body: str, head: str = "") -> str:
    """A whole HTML document: `body` (already escaped markup) with the shared style and script."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n{head}</head>\n<body>\n<main>\n{body}\n</main>\n"
        f"<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n"
    )


def cell(value: Any, kind: str = "") -> str:
    """One `<td>`: numbers right-aligned with their exact value in data-v (for sorting and
    for anyone checking the page against the build); `kind` "percent" shows a share as %."""
    if value is None:
        return '<td data-v="">—</td>' if kind else "<td>—</td>"
    if isinstance(value, bool):
        return f"<td>{esc(value)}</td>"
    if isinstance(value, int | float | Decimal):
        if kind == "percent":
            shown = f"{100 * float(value):.1f} %"
        elif isinstance(value, int):
            shown = f"{value:,}"
        elif isinstance(value, Decimal):
            shown = str(value)
        else:
            shown = f"{value:,.2f}"
        return f'<td data-v="{esc(value)}">{shown}</td>'
    if isinstance(value, datetime):
        return f"<td>{esc(value.isoformat(sep=' '))}</td>"
    if isinstance(value, date):
        return f"<td>{esc(value.isoformat())}</td>"
    return f"<td>{esc(value)}</td>"


Row = TypeVar("Row", bound=Sequence[Any])


def table(
    columns: Sequence[str],
    rows: Sequence[Row],
    table_id: str = "",
    kinds: dict[str, str] | None = None,
    scroll: bool = False,
    marked: Callable[[Row], bool] | None = None,
) -> str:
    """A sortable table; `kinds` maps a column to "percent" (or "n": a number that may be NULL).
    Rows `marked` says are of an incomplete month are shaded and say so on hover."""
    kinds = kinds or {}
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "\n".join(
        ('<tr class="incomplete" title="incomplete month">' if marked and marked(row) else "<tr>")
        + "".join(cell(v, kinds.get(c, "")) for c, v in zip(columns, row, strict=True))
        + "</tr>"
        for row in rows
    )
    attribute = f' id="{esc(table_id)}"' if table_id else ""
    markup = f'<table class="sortable"{attribute}><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'
    return f'<div class="scroll">{markup}</div>' if scroll else markup


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file and a rename: a reader (or a mail
    client attaching the file) sees the old file or the new one, never half of one."""
    path = path.absolute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, text)
    except OSError as e:
        raise FunnelError(f"{path}: cannot write ({e.strerror or e}); check the folder exists and is writable.") from None
    return path
