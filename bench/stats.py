"""Percentiles, result rows and the printed table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Unit = Literal["ms", "s"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolating linearly between closest ranks (the
    same as numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


@dataclass
class Row:
    """One line of the table. Latencies are stored in seconds and printed in ``unit``."""

    db: str
    bench: str
    measure: str
    n: int
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    rate: float | None = None
    #: CPU seconds the server process spent per request (or per run)
    cpu: float | None = None
    #: CPU seconds PostgreSQL's backends spent for the server, per request (or run)
    db_cpu: float | None = None
    unit: Unit = "ms"
    note: str = ""

    @classmethod
    def of(
        cls,
        db: str,
        bench: str,
        measure: str,
        seconds: Sequence[float],
        *,
        tails: Sequence[int] = (95, 99),
        rate: float | None = None,
        cpu: float | None = None,
        db_cpu: float | None = None,
        unit: Unit = "ms",
        note: str = "",
    ) -> Row:
        return cls(
            db=db,
            bench=bench,
            measure=measure,
            n=len(seconds),
            p50=percentile(seconds, 50) if seconds else None,
            p95=percentile(seconds, 95) if seconds and 95 in tails else None,
            p99=percentile(seconds, 99) if seconds and 99 in tails else None,
            rate=rate,
            cpu=cpu,
            db_cpu=db_cpu,
            unit=unit,
            note=note,
        )


def fmt_time(seconds: float | None, unit: Unit) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    if unit == "s":
        return f"{seconds:.2f} s"
    ms = seconds * 1000.0
    if ms < 9.995:
        return f"{ms:.2f} ms"
    if ms < 999.5:
        return f"{ms:.1f} ms"
    return f"{ms:.0f} ms"


def fmt_rate(rate: float | None) -> str:
    return "-" if rate is None or math.isnan(rate) else f"{rate:,.0f}"


HEADERS = (
    "db",
    "benchmark",
    "measure",
    "n",
    "p50",
    "p95",
    "p99",
    "req/s",
    "server CPU",
    "DB CPU",
    "note",
)


def cells(row: Row) -> tuple[str, ...]:
    return (
        row.db,
        row.bench,
        row.measure,
        str(row.n),
        fmt_time(row.p50, row.unit),
        fmt_time(row.p95, row.unit),
        fmt_time(row.p99, row.unit),
        fmt_rate(row.rate),
        fmt_time(row.cpu, "ms"),
        fmt_time(row.db_cpu, "ms"),
        row.note,
    )


def render_text(rows: Sequence[Row]) -> str:
    table = [HEADERS, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    right = {3, 4, 5, 6, 7, 8, 9}

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    out = [line(HEADERS), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in table[1:]]
    return "\n".join(out)


def render_markdown(rows: Sequence[Row]) -> str:
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |" for r in rows]
    return "\n".join(out)
