"""An RO-Crate of a finished run, following the Workflow Run Crate profile
(https://w3id.org/ro/wfrun/workflow/0.5), made with the ``rocrate`` library.

The crate holds: the workflow (the main ``ComputationalWorkflow``, in its language), the
run's attachments and parameters (its inputs: files as ``File``, each parameter as a
``PropertyValue``), the files its outputs name (as ``File``, the result), and one
``CreateAction`` for the run (start and end time, status, the error on failure) whose
instrument is the workflow; the engine is a ``SoftwareApplication`` that is the instrument
of an ``OrganizeAction`` whose result is the run, as the Provenance Run Crate describes it.
An output whose only copy is in S3 is referred to by its ``s3://`` URL, without its bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from rocrate.model.computerlanguage import ComputerLanguage
from rocrate.model.contextentity import ContextEntity
from rocrate.rocrate import ROCrate
from zipstream import ZIP_DEFLATED, ZipStream

from spindle.domain import Run, State
from spindle.storage import fetch
from spindle.storage.archive import read_inside
from spindle.storage.listing import output_paths, walk
from spindle.storage.rundir import RunDir

PROFILES = {
    "process": "https://w3id.org/ro/wfrun/process/0.5",
    "workflow": "https://w3id.org/ro/wfrun/workflow/0.5",
    "provenance": "https://w3id.org/ro/wfrun/provenance/0.5",
    "wroc": "https://w3id.org/workflowhub/workflow-ro-crate/1.0",
}
#: WES workflow_type -> the rocrate library's language name
LANGUAGES = {"CWL": "cwl", "SMK": "snakemake", "NFL": "nextflow", "GALAXY": "galaxy"}


def _workflow_file(run: Run, rundir: RunDir) -> str | None:
    """The workflow's path in the run folder (``attachments/...``), if it is there."""
    url = run.request.workflow_url
    name = fetch.local_name(url) if fetch.is_remote(url) else urlsplit(url).path
    path = (rundir.attachments / name).resolve()
    root = rundir.root.resolve()
    if path.is_file() and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return None


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _size(present: Mapping[str, os.stat_result], path: str) -> dict[str, Any]:
    return {"contentSize": present[path].st_size}


def build(
    run: Run,
    rundir: RunDir,
    *,
    engine: tuple[str, str] | None,
    uploaded: Mapping[str, str] | None = None,
) -> ROCrate:
    """The crate's metadata for ``run`` (blocking: it looks at the run folder). ``engine``:
    its name and version; ``uploaded``: run path -> ``s3://`` URL of files whose local copy
    is gone. Its data entities carry no source: :func:`stream` puts their bytes in the zip,
    read through ``open_inside``."""
    root = rundir.root.resolve()
    present = walk(root) if root.is_dir() else {}
    crate = ROCrate()
    crate.name = f"Spindle run {run.id}"
    crate.description = f"A {run.request.workflow_type} run of {run.request.workflow_url}"
    crate.root_dataset["conformsTo"] = [
        {"@id": PROFILES[k]} for k in ("process", "workflow", "provenance", "wroc")
    ]
    for key, uri in PROFILES.items():
        crate.add(ContextEntity(crate, uri, properties={"@type": "CreativeWork", "name": key}))

    known = LANGUAGES.get(run.request.workflow_type.upper())
    lang: Any = known
    if known is None:  # a language the library does not know: named plainly
        lang = crate.add(
            ComputerLanguage(
                crate,
                f"#{run.request.workflow_type.lower()}",
                properties={
                    "name": run.request.workflow_type,
                    "version": run.request.workflow_type_version,
                },
            )
        )
    workflow_path = _workflow_file(run, rundir)
    props = {"name": run.request.workflow_url}
    if workflow_path is not None:
        workflow = crate.add_workflow(None, workflow_path, main=True, properties=props, lang=lang)
    else:  # the workflow is not in the folder (a backend ran it by reference)
        workflow = crate.add_workflow(
            run.request.workflow_url, main=True, properties=props, lang=lang
        )

    inputs: list[Any] = []
    for path in sorted(p for p in present if p.startswith("attachments/")):
        if path != workflow_path:
            inputs.append(crate.add_file(None, path, properties=_size(present, path)))
    for name, value in sorted(run.request.workflow_params.items()):
        inputs.append(
            crate.add(
                ContextEntity(
                    crate,
                    f"#param-{name}",
                    properties={"@type": "PropertyValue", "name": name, "value": _value(value)},
                )
            )
        )

    results: list[Any] = []
    for path in sorted(output_paths(run.outputs)):
        if path in present:
            results.append(crate.add_file(None, path, properties=_size(present, path)))
        elif uploaded and path in uploaded:
            results.append(
                crate.add(ContextEntity(crate, uploaded[path], properties={"@type": "File"}))
            )

    action_props: dict[str, Any] = {
        "name": f"Run {run.id} of {run.request.workflow_url}",
        "actionStatus": "http://schema.org/CompletedActionStatus"
        if run.state is State.COMPLETE
        else "http://schema.org/FailedActionStatus",
    }
    if run.start_time is not None:
        action_props["startTime"] = run.start_time.isoformat()
    if run.end_time is not None:
        action_props["endTime"] = run.end_time.isoformat()
    if run.state is not State.COMPLETE:
        action_props["error"] = f"{run.state.value}" + (
            f" (exit code {run.exit_code})" if run.exit_code is not None else ""
        )
    action = crate.add_action(
        workflow,
        identifier=f"#run-{run.id}",
        object=inputs,
        result=results,
        properties=action_props,
    )
    if engine is not None:
        name, version = engine
        app = crate.add(
            ContextEntity(
                crate,
                f"#engine-{name}",
                properties={"@type": "SoftwareApplication", "name": name, "version": version},
            )
        )
        crate.add(
            ContextEntity(
                crate,
                f"#organize-{run.id}",
                properties={
                    "@type": "OrganizeAction",
                    "name": f"{name} {version} running the workflow",
                    "instrument": {"@id": app.id},
                    "result": {"@id": action.id},
                },
            )
        )
    return crate


def stream(crate: ROCrate, rundir: RunDir) -> ZipStream:
    """The crate as a zip made while it is read: ``ro-crate-metadata.json`` and every data
    entity's file, each opened only if it is a regular file inside the run folder (so a
    link swapped in after the crate was described cannot put another file in it)."""
    root = rundir.root.resolve()
    metadata = json.dumps(crate.metadata.generate(), indent=2, sort_keys=True).encode()
    zs = ZipStream(compress_type=ZIP_DEFLATED, sized=False)
    zs.add(metadata, arcname="ro-crate-metadata.json")
    for entity in crate.data_entities:
        path = unquote(entity.id)
        if urlsplit(path).scheme or path.startswith("#") or not (root / path).is_file():
            continue  # a reference (an s3:// URL, the workflow by URL), not a file here
        zs.add(read_inside(root, root / path), arcname=path)
    return zs
