"""What the templates show: durations, sizes, output files, workflow names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spindle.web.views import (
    OutputFile,
    duration,
    output_files,
    seconds_text,
    size_text,
    workflow_name,
)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0 s"),
        (59.9, "59 s"),
        (60, "1 m 00 s"),
        (3599, "59 m 59 s"),
        (3600, "1 h 00 m"),
        (90061, "1 d 01 h"),
        (-5, "0 s"),
    ],
)
def test_seconds_text(seconds: float, shown: str) -> None:
    assert seconds_text(seconds) == shown


def test_duration_so_far_and_in_all() -> None:
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert duration(None, None, start) == ""
    assert duration(start, None, start + timedelta(seconds=65)) == "1 m 05 s"
    assert duration(start, start + timedelta(seconds=3), start + timedelta(hours=5)) == "3 s"


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 << 20, "5.0 MiB"), (None, ""), ("9", "")],
)
def test_size_text(size: object, shown: str) -> None:
    assert size_text(size) == shown


def test_output_files_of_snakemake_and_cwl_outputs() -> None:
    snakemake = {
        "files": [
            {
                "class": "File",
                "path": "results/a b.txt",
                "basename": "a b.txt",
                "size": 3,
                "location": "run:work/results/a b.txt",
            },
        ]
    }
    assert output_files("r1", snakemake) == [
        OutputFile(
            name="a b.txt",
            path="results/a b.txt",
            size="3 B",
            url="/ga4gh/wes/v1/runs/r1/files/work/results/a%20b.txt",
            key="files[0]",
        ),
    ]
    cwl = {
        "counts": {
            "class": "File",
            "location": "run:outputs/counts.txt",
            "basename": "counts.txt",
            "path": "/srv/spindle/runs/r2/outputs/counts.txt",
            "secondaryFiles": [{"class": "File", "location": "run:outputs/counts.idx"}],
        },
        "dir": {
            "class": "Directory",
            "location": "run:outputs/d",
            "listing": [{"class": "File", "location": "run:outputs/d/x"}],
        },
        "remote": {"class": "File", "location": "https://example.org/x"},
        "n": 3,
    }
    found = output_files("r2", cwl)
    assert [(f.path, f.key) for f in found] == [
        ("outputs/counts.txt", "counts"),  # never the server's absolute path
        ("outputs/counts.idx", "counts.secondaryFiles[0]"),
        ("outputs/d/x", "dir.listing[0]"),
    ]
    assert output_files("r3", {}) == []


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("Snakefile", "Snakefile"),
        ("flows/main.cwl#wf", "main.cwl"),
        ("https://example.org/wf/", "wf"),
        ("", ""),
    ],
)
def test_workflow_name(url: str, name: str) -> None:
    assert workflow_name(url) == name
