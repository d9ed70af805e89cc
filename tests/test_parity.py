"""The report built from the real export equals the original dbt + PostgreSQL report."""

from __future__ import annotations

from funnel.build.runner import build
from funnel.project.config import load_config
from funnel.project.manifest import compile

from .conftest import SHARED_RAW, needs_shared_raw, read_report, reference_rows


@needs_shared_raw
def test_report_equals_the_reference_row_for_row(project):
    root = load_config(project)
    env = root.environment("dev", SHARED_RAW)
    result = build(compile(root, env))
    assert result.count("ERROR") == 0
    ours = [(str(m), k, str(s), c) for m, k, s, c in read_report(env.database)]
    reference = reference_rows()
    assert len(reference) == 128
    assert ours == reference
    february = [c for m, _, _, c in ours if m == "2024-02-01"]
    assert february == [194, 74, 64, 27, 59, 17, 10, 8, 1, 2]


@needs_shared_raw
def test_the_known_quirks_of_the_real_export_are_warned_about(project):
    root = load_config(project)
    result = build(compile(root, root.environment("dev", SHARED_RAW)))
    warned = {r.test.name: r.failures for r in result.tests if r.status == "WARN"}
    assert warned["unique_stg_activity_activity_id"] == 11
    assert warned["deals_with_several_add_time"] == 5
    assert warned["activities_with_unknown_deal"] == 4579 - 8
