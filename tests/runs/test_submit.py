"""One place turns a submission's fields into a RunRequest: the API's text fields
(``parse_form``) and the UI's own inputs (``new_request``) give the same request and the same
errors, each naming its field."""

from __future__ import annotations

import pytest

from spindle.domain import RunRequest
from spindle.errors import InvalidRequest
from spindle.runs.submit import new_request, parse_form, requested_group


def test_the_api_form_and_decoded_values_give_the_same_request() -> None:
    request, group_id = parse_form(
        {
            "workflow_type": " SMK ",
            "workflow_type_version": "8",
            "workflow_url": "Snakefile",
            "workflow_params": '{"n": [1, {"a": null}]}',
            "tags": '{"project": "x"}',
            "workflow_engine_parameters": '{"cores": 2, "priority": "5"}',
            "run_group_id": "  nightly ",
        }
    )
    decoded = new_request(
        workflow_type="SMK",
        workflow_type_version=" 8",
        workflow_url="Snakefile ",
        workflow_params={"n": [1, {"a": None}]},
        tags={"project": "x"},
        workflow_engine_parameters={"cores": "2", "priority": "5"},
    )
    assert request == decoded
    assert request.workflow_engine is None
    assert group_id == "nightly"


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        # the first field in order is named, whatever else is wrong later
        ({"workflow_params": "{", "workflow_type_version": "8"}, "workflow_type", "is required"),
        (
            {"workflow_type": "SMK", "workflow_type_version": " "},
            "workflow_type_version",
            "is required",
        ),
        (
            {"workflow_type": "SMK", "workflow_type_version": "8", "workflow_url": "a\x00"},
            "workflow_url",
            "must not hold control characters (it holds U+0000)",
        ),
        (
            {"workflow_type": "S", "workflow_type_version": "8", "workflow_url": "f", "tags": "{"},
            "tags",
            "is not valid JSON",
        ),
        (
            {
                "workflow_type": "S",
                "workflow_type_version": "8",
                "workflow_url": "f",
                "tags": '{" k": "v"}',
            },
            "tags",
            "key ' k' must not start or end with spaces",
        ),
    ],
)
def test_form_errors_name_their_field(
    fields: dict[str, str | None], field: str, problem: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_form(fields)
    assert caught.value.field == field
    assert caught.value.problem.startswith(problem)


def test_decoded_values_are_checked_as_form_fields_are() -> None:
    deep: dict[str, object] = {}
    for _ in range(100):
        deep = {"a": deep}
    with pytest.raises(InvalidRequest) as caught:
        new_request(
            workflow_type="SMK", workflow_type_version="8", workflow_url="f", workflow_params=deep
        )
    assert caught.value.field == "workflow_params"
    with pytest.raises(InvalidRequest) as caught:
        new_request(workflow_type="SMK", workflow_type_version="8", workflow_url=None)
    assert (caught.value.field, caught.value.problem) == ("workflow_url", "is required")


def _tagged(group: str) -> RunRequest:
    return new_request(
        workflow_type="SMK",
        workflow_type_version="8",
        workflow_url="f",
        tags={"run_group_id": group},
    )


def test_the_run_group_comes_from_the_id_or_the_tag_of_the_request() -> None:
    assert requested_group("g", _tagged("g")) == "g"
    assert requested_group(None, _tagged(" g ")) == "g"
    assert requested_group("", _tagged("")) is None
    with pytest.raises(InvalidRequest) as caught:
        requested_group("g", _tagged("h"))
    assert caught.value.field == "run_group_id"
    with pytest.raises(InvalidRequest) as caught:
        requested_group("g\x01", _tagged(""))
    assert caught.value.field == "run_group_id"
