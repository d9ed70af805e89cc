"""funnel report and funnel docs: the files, and what a real browser makes of them.

The browser is Debian's headless Chromium, driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: no port, no extra package), with every network request logged:
a page that asks the network for anything, throws, or logs an error fails here. The
numbers drawn are read back from the rendered page and compared with DuckDB.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import pytest

from funnel.build.plan import fingerprint
from funnel.cli import app
from tests.conftest import compiled

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH; apt-get install chromium (.ci/run does when it can)"
)
SCHEMA = "public_pipedrive_analytics"
LOCAL = ("file:", "data:", "blob:", "about:")


class Browser:
    """Headless Chromium with one page, spoken to in DevTools protocol messages over fds 3/4."""

    def __init__(self, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:  # Chromium reads commands on fd 3 and answers on fd 4
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            # Belt and braces: were a request to leave, it would reach nothing.
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            [str(CHROMIUM), *flags], pass_fds=(3, 4), preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session=True)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(30)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return dict(reply["result"])
            self.events.append(reply)

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError("Chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise AssertionError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))

    def open(self, path: Path, ready: str = "true") -> None:
        """Load `path` and wait until the JavaScript expression `ready` is true."""
        self.events.clear()
        self.call("Page.navigate", session=True, url=path.as_uri())
        deadline = time.monotonic() + 90  # a report draws some 50 charts; the machine may be busy
        while not self.evaluate(f"document.readyState === 'complete' && ({ready})"):
            assert time.monotonic() < deadline, f"{path} never became ready ({ready}): {self.problems()}"
            time.sleep(0.05)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, dialogs and requests that left the file."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')} {params['exceptionDetails'].get('exception')}")
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning", "assert"):
                found.append(f"console.{params['type']}: {params['args']}")
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                found.append(f"log {params['entry']['level']}: {params['entry']['text']}")
            elif method == "Network.requestWillBeSent" and not params["request"]["url"].startswith(LOCAL):
                found.append(f"request: {params['request']['url']}")
            elif method == "Page.javascriptDialogOpening":
                found.append(f"dialog: {params['message']}")
        return found

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH; apt-get install chromium (.ci/run does when it can)")
    chrome = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield chrome
    chrome.close()


# The charts drawn (a report draws a chart when it first shows: those of other months wait).
ALL_CHARTS = (
    "Object.fromEntries(Array.from(document.querySelectorAll('div[id^=chart-]')).filter(d => d._fullData).map(d => "
    "[d.id, d._fullData.map(t => ({name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || []), "
    "z: t.z ? t.z.map(r => Array.from(r)) : null}))]))"
)
CHARTS_DRAWN = (  # every chart on show is drawn
    "Array.from(document.querySelectorAll('div[id^=chart-]')).filter(d => d.offsetParent !== null)"
    ".every(d => d.classList.contains('js-plotly-plot') && d._fullData && d.querySelector('svg.main-svg'))"
)


def _run(runner: Any, *args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def _query(built: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(built / "target" / "dev.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture
def report(built: Path, runner: Any) -> Path:
    _run(runner, "report", "--month", "2024-03", "--out", "out/report.html")
    return built / "out" / "report.html"


class _Markup(HTMLParser):
    """Every start tag with its attributes, and the text of each <script> and <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def _fetches(path: Path) -> list[str]:
    """What in a page could make a browser fetch something: external script, style, image,
    frame or font URLs. Plain <a href> links are fine (they are followed only on a click)."""
    markup = _Markup()
    markup.feed(path.read_text(encoding="utf-8"))
    found = []
    for tag, attrs in markup.tags:
        for name, value in attrs.items():
            if name in ("src", "href", "srcset", "data", "poster", "action") and value and not (tag == "a" and name == "href"):
                if not value.startswith(("#", "data:")):
                    found.append(f"<{tag} {name}={value}>")
        if tag == "link":
            found.append(f"<link {attrs}>")
    found += [m for text in markup.inline for m in re.findall(r"@import|url\(\s*['\"]?https?:", text)]
    return found


# --- funnel report -----------------------------------------------------------------------


def test_report_is_one_offline_file_with_plotly_once(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert _fetches(report) == []
    assert "default-src 'none'" in text  # the browser itself refuses any request
    assert len(re.findall(r"\* plotly\.js v\d", text)) == 1
    # plotly.js (4.8 MB) once, and the build's numbers: every month is in the file, so it
    # grows with the months, some 20-30 kB each (README, "See it").
    import plotly.offline

    months = len(re.findall(r'<option value="\d{4}-\d{2}"', text))
    assert months > 1
    assert report.stat().st_size - len(plotly.offline.get_plotlyjs()) <= 50_000 + 35_000 * months
    assert not list(report.parent.glob(".*.tmp"))


@needs_chromium
@pytest.mark.slow
def test_report_draws_the_builds_numbers_without_errors_or_requests(report: Path, built: Path, browser: Browser) -> None:
    browser.open(report, CHARTS_DRAWN)
    assert browser.problems() == []
    charts = browser.evaluate(ALL_CHARTS)
    steps = _query(built, f"select funnel_step, kpi_name, stage_id is not null from {SCHEMA}.funnel_steps order by 1")
    counts = dict(
        _query(built, f"select funnel_step, deals_count from {SCHEMA}.rep_sales_funnel_monthly where month = '2024-03-01'")
    )
    # The month shown is March's block: the funnel holds the stage steps, the calls are beside it.
    funnel_id, calls_id = browser.evaluate(
        "Array.from(document.querySelectorAll('#funnel .per-month:not([hidden]) div[id^=chart-]')).map(d => d.id)"
    )
    (funnel,) = charts[funnel_id]
    (calls,) = charts[calls_id]
    assert funnel["y"] == [name for _, name, is_stage in steps if is_stage]
    assert funnel["x"] == [counts.get(step, 0) for step, _, is_stage in steps if is_stage]
    assert calls["y"] == [name for _, name, is_stage in steps if not is_stage]
    assert calls["x"] == [counts.get(step, 0) for step, _, is_stage in steps if not is_stage]
    assert sum(funnel["x"]) + sum(calls["x"]) == sum(counts.values()) > 0

    trend = {trace["name"]: dict(zip(trace["x"], trace["y"], strict=True)) for trace in charts["chart-trend-0"]}
    rows = _query(built, f"select kpi_name, strftime(month, '%Y-%m-%d'), deals_count from {SCHEMA}.rep_sales_funnel_monthly")
    assert all(trend[name][month] == count for name, month, count in rows)
    assert sum(sum(t.values()) for t in trend.values()) == sum(count for _, _, count in rows)

    (heatmap,) = charts["chart-rep_stage_conversion-0"]
    rates = _query(
        built,
        f"select strftime(cohort_month, '%Y-%m-%d'), from_step, to_step, conversion_rate from {SCHEMA}.rep_stage_conversion",
    )
    cells = {(month, x): heatmap["z"][i][j] for i, month in enumerate(heatmap["y"]) for j, x in enumerate(heatmap["x"])}
    assert all(cells[(month[:7], f"{a} → {b}")] == rate for month, a, b, rate in rates)

    shown = browser.evaluate(
        "Array.from(document.querySelectorAll('#funnel-2024-03 tbody tr'))"
        ".map(r => [r.cells[1].textContent, Number(r.cells[2].dataset.v)])"
    )
    assert shown == [[name, counts.get(step, 0)] for step, name, _ in steps]


@needs_chromium
@pytest.mark.slow
def test_report_tables_sort_when_a_header_is_clicked(report: Path, browser: Browser) -> None:
    browser.open(report, CHARTS_DRAWN)
    column = "Array.from(document.querySelectorAll('#funnel-2024-03 tbody tr')).map(r => Number(r.cells[2].dataset.v))"
    before = browser.evaluate(column)
    browser.evaluate("document.querySelectorAll('#funnel-2024-03 th')[2].click()")
    assert browser.evaluate(column) == sorted(before)
    browser.evaluate("document.querySelectorAll('#funnel-2024-03 th')[2].click()")
    assert browser.evaluate(column) == sorted(before, reverse=True)
    assert browser.problems() == []


@needs_chromium
@pytest.mark.slow
def test_names_from_the_export_are_text_not_markup(project: Path, runner: Any, browser: Browser) -> None:
    hostile = '</script><script>alert(1)</script><img src=x onerror=alert(2)> & "Bob"'
    users = project / "raw_data" / "users.csv"
    lines = users.read_text().splitlines()
    first = lines[1].split(",")
    lines[1] = ",".join([first[0], '"' + hostile.replace('"', '""') + '"', *first[2:]])
    users.write_text("\n".join(lines) + "\n")
    _run(runner, "build")
    month = _query(
        project,
        f"select strftime(max(month), '%Y-%m') from {SCHEMA}.rep_owner_funnel_monthly where owner_id = ?",
        [int(first[0])],
    )
    _run(runner, "report", "--month", month[0][0], "--out", "report.html")
    browser.open(project / "report.html", CHARTS_DRAWN)
    assert browser.problems() == []
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
    names = browser.evaluate(
        f"Array.from(document.querySelectorAll('#owners-{month[0][0]} td:nth-child(1)')).map(c => c.textContent)"
    )
    assert hostile in names


def test_report_of_a_month_without_rows_names_the_months_there_are(built: Path, runner: Any) -> None:
    result = runner.invoke(app, ["report", "--month", "1999-01", "--out", "r.html"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no rows for 1999-01 in rep_sales_funnel_monthly (env 'dev'); the build covers ")
    assert not (built / "r.html").exists()


def test_report_without_plotly_says_how_to_install_it(built: Path, runner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.io", None)
    result = runner.invoke(app, ["report", "--out", "r.html"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: funnel report draws its charts with plotly, which is not installed; "
        "pip install pipedrive-funnel again, or pip install plotly."
    ]


def test_a_failed_write_leaves_the_previous_report(report: Path, runner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    before = report.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("funnel.atomic.os.fsync", full_disk)
    result = runner.invoke(app, ["report", "--month", "2024-04", "--out", "out/report.html"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {report}: cannot write (No space left on device)")
    assert report.read_bytes() == before
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html"]


def test_report_lists_each_warning_with_its_count_and_an_example(report: Path, built: Path) -> None:
    from funnel.build import record

    with duckdb.connect(str(built / "target" / "dev.duckdb"), read_only=True) as con:
        found = record.read(con)
    assert found is not None
    results = found.test_results
    warned = {name: r["failures"] for name, r in results.items() if r["failures"]}
    assert warned  # the sample carries known quirks
    text = report.read_text(encoding="utf-8")
    quality = text[text.index('<section id="quality">') : text.index('<section id="provenance">')]
    for name, failures in warned.items():
        heading = f'<h3><span class="WARN">WARN</span> {name}: {failures:,} {"row" if failures == 1 else "rows"}</h3>'
        assert heading in quality
        example = quality[quality.index(heading) :].split("<h3>")[1]
        assert "An example row:" in example and "<tbody>\n<tr>" in example


def test_report_provenance_has_the_export_and_its_fingerprints(report: Path, built: Path) -> None:
    text = report.read_text(encoding="utf-8")
    provenance = text[text.index('<section id="provenance">') :]
    assert "<dt>export folder</dt><dd>raw_data</dd>" in provenance
    for csv in sorted((built / "raw_data").glob("*.csv")):
        assert f"<td>{csv.name}</td>" in provenance
        assert f"<td>{fingerprint(csv).sha256}</td>" in provenance
    assert str(built) not in text  # no local path in a file that travels by mail


def test_report_leaves_out_analyses_the_build_does_not_have(built: Path, runner: Any) -> None:
    with duckdb.connect(str(built / "target" / "dev.duckdb")) as con:  # as a build from before the analyses
        con.execute(f"drop table {SCHEMA}.rep_stage_conversion")
        con.execute(f"drop table {SCHEMA}.rep_deal_cohorts")
    _run(runner, "report", "--out", "r.html")
    text = (built / "r.html").read_text(encoding="utf-8")
    assert '<section id="funnel">' in text and '<section id="trend">' in text
    assert '<section id="rep_stage_conversion">' not in text
    assert "<dt>not in this build</dt><dd>rep_stage_conversion, rep_deal_cohorts" in text


# --- funnel docs -------------------------------------------------------------------------


@pytest.fixture
def docs(built: Path, runner: Any) -> Path:
    _run(runner, "docs")
    return built / "target" / "docs" / "index.html"


@needs_chromium
@pytest.mark.slow
def test_docs_page_draws_the_lineage_of_the_compiled_project(docs: Path, built: Path, browser: Browser) -> None:
    manifest = compiled(built)
    browser.open(docs)
    assert browser.problems() == []
    assert _fetches(docs) == []
    boxes = browser.evaluate("Array.from(document.querySelectorAll('#lineage-graph a title')).map(t => t.textContent)")
    graph = manifest.graph
    assert set(graph.models) | {f"pipedrive.{s.table}" for s in manifest.sources} <= set(boxes)
    test_groups = {t.depends_on for t in manifest.tests}
    edges = sum(len(m.refs) + len(m.sources) for m in graph.models.values()) + sum(len(g) for g in test_groups)
    assert browser.evaluate("document.querySelectorAll('#lineage-graph path').length") == edges
    articles = browser.evaluate("Array.from(document.querySelectorAll('article')).map(a => a.id)")
    assert articles == [f"model-{name}" for name in graph.order]
    targets = browser.evaluate("Array.from(document.querySelectorAll('#lineage-graph a')).map(a => a.getAttribute('href'))")
    assert all(browser.evaluate(f"document.getElementById({json.dumps(t[1:])}) !== null") for t in set(targets))


def test_docs_show_types_from_the_build_and_descriptions_from_the_project(docs: Path, built: Path) -> None:
    text = docs.read_text(encoding="utf-8")
    article = text[text.index("<article id='model-rep_sales_funnel_monthly'>") :].split("</article>")[0]
    types = _query(
        built,
        "select column_name, data_type from information_schema.columns "
        "where table_name = 'rep_sales_funnel_monthly' order by ordinal_position",
    )
    for column, kind in types:
        assert f"<td>{column}</td><td>{kind}</td><td>" in article
    assert "<td>First day of the calendar month the deals are counted in</td>" in article
    assert "Deals per funnel step and calendar month." in article
    assert "Compiled SQL" in article and "public_pipedrive_analytics" in article
    assert "<td>unique_rep_sales_funnel_monthly_month__funnel_step</td><td>error</td><td>PASS</td>" in article


def test_docs_without_a_build_say_so(project: Path, runner: Any) -> None:
    _run(runner, "docs", "--out", "site")
    text = (project / "site" / "index.html").read_text(encoding="utf-8")
    assert "No build of env &#x27;dev&#x27; yet: column types of models are unknown" in text
    assert "unknown: not built" in text


def test_columns_toml_naming_no_model_of_its_folder_is_an_error(project: Path, runner: Any) -> None:
    (project / "sql" / "staging" / "columns.toml").write_text('[stg_deal_change]\ndeal_id = "The deal"\n')
    result = runner.invoke(app, ["docs"])
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: {project / 'sql' / 'staging' / 'columns.toml'}: [stg_deal_change] is no model in this folder. Did you mean"
    )


def test_columns_toml_is_neither_a_model_nor_a_test(project: Path) -> None:
    before = compiled(project)
    (project / "sql" / "staging" / "columns.toml").write_text('[stg_users]\nuser_id = "The user"\n')
    after = compiled(project)
    assert after.graph.order == before.graph.order
    assert [t.name for t in after.tests] == [t.name for t in before.tests]


def test_docs_lists_the_models_and_reporting_columns_without_a_description(built: Path, runner: Any) -> None:
    # Documentation is reported, not enforced: a model of the user's own builds, and docs says what to describe.
    model = built / "sql" / "reporting" / "rep_x.sql"
    model.write_text("select month, deals_count from {{ ref('rep_sales_funnel_monthly') }}\n")
    assert runner.invoke(app, ["build"]).exit_code == 0
    result = runner.invoke(app, ["docs"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "  model    rep_x: a -- comment block opening the file (sql/reporting/rep_x.sql)" in lines
    assert "  columns  rep_x: month, deals_count (columns.toml beside it, under [rep_x])" in lines

    model.write_text("-- One row per month: the deals of the funnel.\n" + model.read_text())
    with (built / "sql" / "reporting" / "columns.toml").open("a") as f:
        f.write('\n[rep_x]\nmonth = "The month"\ndeals_count = "Deals"\n')
    result = runner.invoke(app, ["docs"])
    assert result.exit_code == 0, result.output
    assert "rep_x" not in result.stderr


CHART_MARKUP = '<a href="https://example.com/x">link</a> <b>bold</b><br>next <span style="font-size:40px">big</span> &amp; R&D'


@needs_chromium
@pytest.mark.slow
def test_labels_from_the_export_are_chart_text_not_plotly_markup(project: Path, runner: Any, browser: Browser) -> None:
    """plotly renders a subset of HTML in every text (links, bold, line breaks, styles) and
    decodes entities: an owner name or a lost reason label must show as it is, nothing more."""
    owner, reason = CHART_MARKUP + " (owner)", CHART_MARKUP + " (reason)"
    users = project / "raw_data" / "users.csv"
    lines = users.read_text().splitlines()
    first = lines[1].split(",")
    lines[1] = ",".join([first[0], '"' + owner.replace('"', '""') + '"', *first[2:]])
    users.write_text("\n".join(lines) + "\n")
    fields = project / "raw_data" / "fields.csv"
    label = json.dumps(reason).replace('"', '""')
    assert '""Customer Not Ready""' in fields.read_text()
    fields.write_text(fields.read_text().replace('""Customer Not Ready""', label))
    _run(runner, "build")
    month = _query(
        project,
        f"select strftime(max(month), '%Y-%m') from {SCHEMA}.rep_owner_funnel_monthly where owner_id = ?",
        [int(first[0])],
    )
    _run(runner, "report", "--month", month[0][0], "--out", "report.html")
    browser.open(project / "report.html", CHARTS_DRAWN)
    assert browser.problems() == []  # no request, no error
    chart = browser.evaluate("document.querySelector('#rep_owner_funnel_monthly .per-month:not([hidden]) div[id^=chart-]').id")
    owners_axis = browser.evaluate(f"Array.from(document.querySelectorAll('#{chart} .ytick text')).map(t => t.textContent)")
    assert owner in owners_axis  # the name as it is, without the owner's id
    legend = browser.evaluate(
        "Array.from(document.querySelectorAll('#chart-rep_lost_reasons_monthly-0 .legendtext')).map(t => t.textContent)"
    )
    assert reason in legend
    hover = (
        f"(() => {{ const gd = document.getElementById('{chart}');"
        " const k = gd._fullData[0].y.findIndex(y => y.includes('example.com'));"
        " Plotly.Fx.hover(gd, [{curveNumber: 0, pointNumber: k}]);"
        " return gd.querySelector('.hoverlayer').textContent; })()"
    )
    assert owner in browser.evaluate(hover)
    # Nothing became markup: no link, no line break (a second tspan.line), no style of the label's.
    drawn = "Array.from(document.querySelectorAll('div[id^=chart-] svg'))"
    assert browser.evaluate(f"{drawn}.flatMap(s => Array.from(s.querySelectorAll('a'))).length") == 0
    assert browser.evaluate(f"{drawn}.flatMap(s => Array.from(s.querySelectorAll('tspan.line'))).length") == 0
    assert browser.evaluate(f"{drawn}.flatMap(s => Array.from(s.querySelectorAll('[style*=\"40px\"]'))).length") == 0


def test_chart_text_escapes_every_trace_string_but_our_templates() -> None:
    from funnel.outputs.html_report import chart_text

    figure = {
        "data": [
            {
                "type": "bar",
                "name": "<b>Bo</b> & Co",
                "y": ["<a href='https://x'>x</a>", 3],
                "marker": {"color": ["#3a6ea5"]},
                "hovertemplate": "%{y}<br>%{x:,} deals<extra></extra>",
            }
        ],
        "layout": {"title": {"text": "deals<br>per month"}},
    }
    (trace,) = chart_text(figure)["data"]
    assert trace["name"] == "&lt;b&gt;Bo&lt;/b&gt; &amp; Co"
    assert trace["y"] == ["&lt;a href='https://x'&gt;x&lt;/a&gt;", 3]
    assert trace["hovertemplate"] == "%{y}<br>%{x:,} deals<extra></extra>"
    assert trace["marker"] == {"color": ["#3a6ea5"]}
    assert chart_text(figure)["layout"] == figure["layout"]
