"""Spindle's benchmark: ``python -m bench`` (see ``docs/benchmarks.md``).

Every figure is taken from the outside, against a real ``spindle serve`` process that the
benchmark starts on a fresh data folder and a fresh database (SQLite, PostgreSQL or both):

* ``dispatch``: POST /runs until the engine process is started, with an idle worker;
* ``reads``: GET /runs/{id}/status and GET /runs pages at two table sizes;
* ``e2e``: a real CWL workflow through Spindle against the same workflow run by cwltool.

Speed is measured here and never asserted in tests.
"""
