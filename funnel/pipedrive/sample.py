"""`funnel generate`: a realistic Pipedrive-format export of any size, made in DuckDB.

The shape follows the real export measured in shared/reference (per deal: ~7.7
deal_changes rows, ~2.3 activities; stage 1 first, forward with skips; owner changes;
one lost reason) and so do its quirks: deals with two `add_time` rows (a second
lifecycle, so stages are re-entered), activity ids that appear twice with different
content, and activities whose deal_id is in no deal_changes row.

Randomness comes from DuckDB's `hash()` of (seed, row, salt), so every value depends only on
the seed and the row: the files are byte-identical for a seed, the work is linear and
streams through DuckDB, and Python never holds the rows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from funnel.errors import FunnelError, first_line
from funnel.project.sources import SOURCES, TS, TS_ISO, TS_MICRO
from funnel.quoting import quote_literal

START = "2024-01-01"
CREATION_DAYS = 250  # deals are created over ~8 months; their changes run ~6 more
ACTIVITY_DAYS = 273  # activities are due over the first 9 months, as in the real export
STOP_PER_STAGE = 0.15  # chance a deal stops at each stage
KEEP_STAGE = 0.8  # chance an intermediate stage is not skipped
SECOND_LIFECYCLE = 0.0025
MAX_GAP_DAYS = 120  # between two changes of a deal
# Mean days a deal spends in stage 1..9 (skewed: most move fast, some linger).
STAY_DAYS = (4, 7, 10, 14, 18, 9, 21, 30, 45)
SECOND_OWNER, THIRD_OWNER = 0.25, 0.002  # a second owner takes over after some stage
NO_OWNER, LATE_OWNER = 0.01, 0.03  # no user_id row at all; owner set only after stage 1
LAST_LOST_STAGE = 6  # deals that reach stage 7 (onboarding) were won: no lost reason
STILL_OPEN = 0.1  # of the others, still open at export time: no lost reason yet
ACTIVITIES_PER_DEAL = 2.2895
USERS_PER_DEAL = 0.8935
ACTIVITY_OF_KNOWN_DEAL = 0.0018
DUPLICATE_ACTIVITY_ID = 0.0024
# deals.csv: each deal's state at the end of its deal_changes. Values vary by pipeline and
# owner (an owner's deals are larger or smaller), in the owner's currency.
PIPELINE_VALUE_CENTS = (800_000,)  # a typical deal of pipeline 1, 2, ..., in cents
CURRENCIES = ("EUR", "EUR", "EUR", "EUR", "USD", "USD", "GBP")  # by owner
WON_FROM_STAGE = 7  # a deal that reaches onboarding (stage 7) was won when it got there
OWN_PROBABILITY = 0.15  # deals whose probability is set (else the stage's applies)
NO_CLOSE_DATE = 0.1
CHUNK = 250_000  # rows drawn per DuckDB query: bounds memory, paces the progress bar
MEMORY_LIMIT = "1GB"

STAGES = (
    "Lead Generation",
    "Qualified lead",
    "Needs Assessment",
    "Proposal/Quote Preparation",
    "Negotiation",
    "Closing",
    "Implementation/Onboarding",
    "Follow-up/Customer Success",
    "Renewal/Expansion",
)
ACTIVITY_TYPES = (
    ("1", "Sales Call 1", "Yes", "meeting"),
    ("2", "Sales Call 2", "Yes", "sc_2"),
    ("3", "Follow Up Call", "No", "follow_up"),
    ("4", "After Close Call", "Yes", "after_close_call"),
)
LOST_REASONS = ("Customer Not Ready", "Pricing Issues", "Unreachable Customer", "Product Mismatch", "Duplicate Entry")
# Lost reason ids drawn at each stage a deal stopped at (1..6): duplicates and unreachable
# leads early, mismatches at needs assessment, pricing at proposal and negotiation.
LOST_REASON_BAGS = (
    (5, 5, 5, 3, 3, 3, 3, 1, 4, 1),
    (3, 3, 3, 1, 1, 4, 4, 5, 2, 1),
    (4, 4, 4, 4, 1, 1, 2, 3, 2, 1),
    (2, 2, 2, 2, 2, 1, 1, 4, 3, 2),
    (2, 2, 2, 2, 1, 1, 1, 3, 2, 1),
    (1, 1, 1, 2, 2, 2, 3, 1, 1, 2),
)
FIRST_NAMES = (
    "Ashley Joseph Katie Teresa Max Linda James Maria Robert Jennifer Michael Patricia David Susan William "
    "Karen Richard Nancy Thomas Lisa Daniel Betty Matthew Sandra Anthony Emily Mark Donna Paul Carol"
).split()
LAST_NAMES = (
    "Gonzalez Pena Brown Smith Herrera Phillips Johnson Williams Jones Garcia Miller Davis Rodriguez Martinez "
    "Wilson Anderson Taylor Thomas Moore Jackson Martin Lee Thompson White Harris Clark Lewis Walker Young Allen"
).split()
WORDS = "crystal wagner natasha amanda benjamin william nicholas jackson webb smith lopez reed kim ward".split()


def _sql_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _options_json(labels: tuple[str, ...]) -> str:
    return "[" + ",".join(f'{{"id": "{i}", "label": "{label}"}}' for i, label in enumerate(labels, start=1)) + "]"


def _static_files() -> dict[str, list[tuple[str, ...]]]:
    stage_labels = tuple("Qualified Lead" if s == "Qualified lead" else s for s in STAGES)
    return {
        "activity_types": list(ACTIVITY_TYPES),
        "fields": [
            ("13", "add_time", "Deal created", ""),
            ("3", "user_id", "Owner", ""),
            ("10", "stage_id", "Stage", _options_json(stage_labels)),
            ("23", "lost_reason", "Lost reason", _options_json(LOST_REASONS)),
        ],
        "stages": [(str(i), name) for i, name in enumerate(STAGES, start=1)],
    }


def _sizes(deals: int) -> dict[str, int]:
    """Rows to draw per table: deals, activities and users scale with the deal count."""
    return {
        "deal_changes": deals,
        "activity": max(1, round(deals * ACTIVITIES_PER_DEAL)),
        "users": max(1, round(deals * USERS_PER_DEAL)),
    }


def _reps(deals: int) -> int:
    """Sales reps who own deals and make calls: a few dozen in the sample, more as it grows."""
    return max(1, min(_sizes(deals)["users"], round(2 * deals**0.5)))  # type: ignore[no-any-return]


def _queries(deals: int, start: int, stop: int) -> dict[str, str]:
    """The query per generated table for rows [start, stop) of what it draws."""
    reps = _reps(deals)
    deal_id = "(100000 + 5 * {i} + pick({i}, 1, 4))"  # never ends in 4 mod 5
    real = deal_id.format(i="i")
    depth = f"least(9, 1 + floor(ln(1 - r(lc.i, 10 + lc.lc)) / ln({1 - STOP_PER_STAGE})))::int"  # geometric
    return {
        "deal_changes": f"""
        with lifecycles as (
            select i, {real} as deal_id, 0 as lc,
                timestamp '{START}' + to_seconds((r(i, 2) * {CREATION_DAYS * 86400})::bigint) as started_at,
            from range({start}, {stop}) as t(i)
            union all
            select i, {real}, 1,
                timestamp '{START}' + to_seconds((r(i, 2) * {CREATION_DAYS * 86400})::bigint)
                    + to_days((20 + r(i, 4) * 40)::int) + to_seconds((r(i, 5) * 86400)::bigint),
            from range({start}, {stop}) as t(i)
            where r(i, 3) < {SECOND_LIFECYCLE}
        ),
        -- A lifecycle is a chain: add_time, its owner, stage 1 and onwards with skips up
        -- to the deal's depth, then, unless the deal was won or is still open, its lost
        -- reason. Slots: stage s at seq 10 + 2s; an owner change after stage s at 11 + 2s.
        events as (
            select lc.i, lc.deal_id, lc.lc, lc.started_at, e.seq,
                {depth} as depth,
            from lifecycles as lc
            cross join range(0, 41) as e(seq)
        ),
        owned as (
            select *,
                case
                    when r(i, 45 + lc) < {NO_OWNER} then -1
                    when r(i, 46 + lc) < {LATE_OWNER} then 13
                    else 1
                end as first_owner_seq,
                case when r(i, 42 + lc) < {SECOND_OWNER}
                    then 11 + 2 * (1 + pick(i, 43 + lc, depth)) end as second_owner_seq,
                depth <= {LAST_LOST_STAGE} and r(i, 47 + lc) >= {STILL_OPEN} as is_lost,
            from events
        ),
        kept as (
            select *,
                case
                    when seq = 0 then 'add_time'
                    when seq in (1, 2, 13) or seq % 2 = 1 then 'user_id'
                    when seq between 12 and 28 then 'stage_id'
                    when seq = 40 then 'lost_reason'
                end as changed_field_key,
                -- Time in a stage: skewed (exponential), its mean depending on the stage.
                case when seq = 0 then 0 else least({MAX_GAP_DAYS}, 1 + floor(
                    -{list(STAY_DAYS)}[case when seq = 40 then depth else least(9, greatest(1, (seq - 11) // 2)) end]
                    * ln(1 - r(i * 64 + seq, 20 + lc))))
                end as gap_days,
            from owned
            where seq = 0
                or seq = first_owner_seq
                or seq = second_owner_seq
                or (seq = 2 and first_owner_seq = 1 and r(i, 44 + lc) < {THIRD_OWNER})
                or (seq = 40 and is_lost)
                or (seq between 12 and 28 and seq % 2 = 0 and (seq - 10) // 2 <= depth
                    and ((seq - 10) // 2 in (1, depth) or r(i * 64 + seq, 30 + lc) < {KEEP_STAGE}))
        ),
        changes as (
            select i, deal_id, changed_field_key,
                started_at + to_days((sum(gap_days) over (
                    partition by i, lc order by seq rows unbounded preceding))::int) as changed_at,
                case changed_field_key
                    when 'add_time' then strftime(started_at, '{TS_ISO}')
                    when 'user_id' then (1 + floor({reps} * pow(r(i * 64 + seq, 41 + lc), 1.5)))::bigint::varchar
                    when 'stage_id' then ((seq - 10) // 2)::varchar
                    else {[list(b) for b in LOST_REASON_BAGS]}[depth][1 + pick(i, 51 + lc, 10)]::varchar
                end as new_value,
            from kept
        )
        select deal_id, strftime(changed_at, '{TS}') as change_time, changed_field_key, new_value
        from changes
        order by h(i, 99), i, changed_at, changed_field_key, new_value
        """,
        "activity": f"""
        with picked as (
            select j,
                case when j > 0 and r(j, 60) < {DUPLICATE_ACTIVITY_ID}
                    then j - 1 else j end as id_row,
                pick(j, 63, {deals}) as deal_row,
                r(j, 64) < {ACTIVITY_OF_KNOWN_DEAL} as is_known_deal,
            from range({start}, {stop}) as t(j)
        )
        select
            (100000 + 3 * id_row + pick(id_row, 61, 3))::bigint as activity_id,
            {_sql_list([t[3] for t in ACTIVITY_TYPES])}[1 + pick(j, 62, {len(ACTIVITY_TYPES)})] as type,
            (1 + floor({reps} * pow(r(j, 65), 1.5)))::bigint as assigned_to_user,
            case when is_known_deal then {deal_id.format(i="deal_row")}
                else (100000 + 5 * (pick(j, 66, {deals * 2})) + 4)::bigint end as deal_id,
            case when r(j, 67) < 0.5 then 'True' else 'False' end as done,
            strftime(timestamp '{START}' + to_seconds((r(j, 68) * {ACTIVITY_DAYS * 86400})::bigint), '{TS_ISO}') as due_to,
        from picked
        order by h(j, 69), j
        """,
        "users": f"""
        select
            u + 1 as id,
            {_sql_list(FIRST_NAMES)}[1 + pick(u, 70, {len(FIRST_NAMES)})] || ' ' ||
                {_sql_list(LAST_NAMES)}[1 + pick(u, 71, {len(LAST_NAMES)})] as name,
            {_sql_list(WORDS)}[1 + pick(u, 72, {len(WORDS)})] ||
                {_sql_list(WORDS)}[1 + pick(u, 73, {len(WORDS)})] ||
                (pick(u, 74, 100))::varchar || '@example.' ||
                ['org', 'com', 'net'][1 + pick(u, 75, 3)] as email,
            strftime(timestamp '{START}' + to_microseconds((r(u, 76) * 366 * 86400e6)::bigint), '{TS_MICRO}') as modified,
        from range({start}, {stop}) as t(u)
        order by u
        """,
    }


def _deals_query(deal_changes: Path) -> str:
    """deals.csv from the deal_changes.csv just written, so the two agree by construction:
    owner and stage are the latest user_id and stage entry (ties: the larger id), add_time
    the earliest add_time; a deal is lost when its latest lost reason is no earlier than its
    latest stage entry, won when it is not lost and its latest stage is onboarding or later
    (won when it first got there), else open."""
    read = (
        f"read_csv({quote_literal(str(deal_changes))}, header = true, auto_detect = false, "
        "columns = {'deal_id': 'BIGINT', 'change_time': 'TIMESTAMP', 'changed_field_key': 'VARCHAR', 'new_value': 'VARCHAR'})"
    )
    currencies = _sql_list(CURRENCIES)
    return f"""
        with changes as (select * from {read}),
        per_deal as (
            select
                deal_id,
                min(case when changed_field_key = 'add_time' then try_cast(new_value as timestamp) end) as add_time,
                arg_max(try_cast(new_value as bigint), (change_time, try_cast(new_value as bigint)))
                    filter (where changed_field_key = 'user_id') as owner_id,
                arg_max(try_cast(new_value as bigint), (change_time, try_cast(new_value as bigint)))
                    filter (where changed_field_key = 'stage_id') as stage_id,
                max(change_time) filter (where changed_field_key = 'stage_id') as last_entry,
                max(change_time) filter (where changed_field_key = 'stage_id'
                    and try_cast(new_value as bigint) < {WON_FROM_STAGE}) as last_early_entry,
                max(change_time) filter (where changed_field_key = 'lost_reason') as lost_time,
            from changes
            group by deal_id
        ),
        won_at as (
            select per_deal.deal_id, min(changes.change_time) as won_time,
            from per_deal
            inner join changes on changes.deal_id = per_deal.deal_id
                and changes.changed_field_key = 'stage_id'
                and try_cast(changes.new_value as bigint) >= {WON_FROM_STAGE}
                and changes.change_time > coalesce(per_deal.last_early_entry, timestamp '1970-01-01')
            group by per_deal.deal_id
        ),
        deals as (
            select
                per_deal.*,
                won_at.won_time as reached_won,
                case
                    when per_deal.lost_time >= coalesce(per_deal.last_entry, per_deal.lost_time) then 'lost'
                    when per_deal.stage_id >= {WON_FROM_STAGE} and won_at.won_time is not null then 'won'
                    else 'open'
                end as status,
                1 as pipeline_id,
            from per_deal
            left join won_at on won_at.deal_id = per_deal.deal_id
            where per_deal.add_time is not null and per_deal.stage_id is not null
        )
        select
            deal_id,
            owner_id,
            pipeline_id,
            stage_id,
            status,
            -- in cents: the pipeline's typical deal, scaled by the owner (0.6 to 1.4) and
            -- skewed per deal (0.25 to 2.75); one deal in fifty has no value yet
            cast(cast(case when r(deal_id, 80) < 0.02 then 0 else floor(
                {list(PIPELINE_VALUE_CENTS)}[pipeline_id]
                * (0.6 + 0.8 * r(coalesce(owner_id, 0), 81))
                * (0.25 + 2.5 * pow(r(deal_id, 82), 2))) end as decimal(18, 0)) * 0.01 as decimal(18, 2)) as value,
            {currencies}[1 + pick(coalesce(owner_id, 0), 83, {len(CURRENCIES)})] as currency,
            strftime(add_time, '{TS}') as add_time,
            case when status = 'won' then strftime(reached_won, '{TS}') end as won_time,
            case when status = 'lost' then strftime(lost_time, '{TS}') end as lost_time,
            case when r(deal_id, 84) >= {NO_CLOSE_DATE}
                then strftime(add_time::date + (14 + pick(deal_id, 85, 107))::int, '%Y-%m-%d') end as expected_close_date,
            case when r(deal_id, 86) < {OWN_PROBABILITY} then 10 * pick(deal_id, 87, 11) end as probability,
        from deals
        order by h(deal_id, 88), deal_id
        """


def generate(
    out: Path,
    deals: int = 2000,
    seed: int = 42,
    on_progress: Callable[[str, int, int], None] | None = None,
    force: bool = False,
) -> dict[str, int]:
    """Write the CSVs of an export with `deals` deals into `out`; return rows per file.

    Large tables are made in chunks of CHUNK rows drawn (deals, activities, users), each
    written by DuckDB and appended to the file, so memory stays bounded at any size and
    `on_progress(table, done, total)` can follow along. Files are built in a temporary
    folder and moved into `out` when complete.
    """
    import duckdb

    if deals < 1 or seed < 0:
        raise FunnelError("--deals must be 1 or more and --seed 0 or more.")
    existing = [s.file_name for s in SOURCES if (out / s.file_name).exists()]
    if existing and not force:
        raise FunnelError(
            f"{out}: already holds an export ({', '.join(existing)}); choose another --out, or add --force to replace it."
        )
    out.mkdir(parents=True, exist_ok=True)
    _check_free_space(out, deals)
    sizes = _sizes(deals)
    total = sum(sizes.values())
    done = 0
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix=".funnel-generate-", dir=out) as tmp:
        con = duckdb.connect(config={"temp_directory": os.path.join(tmp, "spill"), "memory_limit": MEMORY_LIMIT})
        con.execute("set enable_progress_bar = false")  # DuckDB's bar goes to stdout (funnel/engine/database.py, quiet)
        # DuckDB's hash of several arguments correlates values that differ only in the salt,
        # so the salt goes into the key and one hash (a 64-bit finaliser) mixes it all.
        # r(): uniform in [0, 1); pick(): uniform whole number in [0, n). Both depend on seed and row only.
        con.execute(f"create macro h(row, salt) as hash(xor(hash({seed}), (row * 256 + salt)::ubigint))")
        con.execute("create macro r(row, salt) as (h(row, salt) >> 11)::double / 9007199254740992.0")
        con.execute("create macro pick(row, salt, n) as (h(row, salt) % n)::bigint")
        for source in SOURCES:
            path = Path(tmp) / source.file_name
            static = _static_files().get(source.table)
            if source.table == "deals":
                # From the deal_changes.csv written (and moved into `out`) before it.
                query = _deals_query(out / "deal_changes.csv")
                try:
                    row = con.execute(f"copy ({query}) to {quote_literal(str(path))} (format csv, header true)").fetchone()
                except duckdb.Error as e:
                    raise FunnelError(f"{out}: generating {source.file_name} failed ({first_line(e)}).") from None
                counts[source.table] = int(row[0]) if row else 0
            elif static is not None:
                _write_static(path, source.required_columns, static)
                counts[source.table] = len(static)
            else:
                part = Path(tmp) / "part.csv"
                rows = 0
                with path.open("wb") as f:
                    f.write((",".join(source.columns) + "\n").encode())
                    for start in range(0, sizes[source.table], CHUNK):
                        stop = min(start + CHUNK, sizes[source.table])
                        query = _queries(deals, start, stop)[source.table]
                        try:
                            target = quote_literal(str(part))
                            row = con.execute(f"copy ({query}) to {target} (format csv, header false)").fetchone()
                        except duckdb.Error as e:
                            raise FunnelError(f"{out}: generating {source.file_name} failed ({first_line(e)}).") from None
                        rows += int(row[0]) if row else 0
                        with part.open("rb") as chunk:
                            shutil.copyfileobj(chunk, f, 1 << 20)
                        done += stop - start
                        if on_progress:
                            on_progress(source.table, done, total)
                counts[source.table] = rows
            shutil.move(path, out / source.file_name)
        con.close()
    return counts


BYTES_PER_DEAL = 560  # measured: 1M deals write 0.53 GB of CSV; rounded up


def _check_free_space(out: Path, deals: int) -> None:
    """Refuse before writing a byte when the export cannot fit: a full disk hurts every program."""
    needed = deals * BYTES_PER_DEAL + 2 * CHUNK * 200  # the files, plus one chunk's part file and spill
    free = shutil.disk_usage(out).free
    if needed > free:
        raise FunnelError(
            f"{out}: {deals:,} deals need about {_size(needed)} and only {_size(free)} is free; "
            "generate fewer deals or free some disk."
        )


def _size(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"


def _write_static(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
