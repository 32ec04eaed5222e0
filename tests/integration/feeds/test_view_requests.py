"""Which view of a feed a request names, and how a malformed one is refused."""

from __future__ import annotations

from typing import Any

import pytest

from django_realtime.exceptions import RequestError
from django_realtime.feeds import query
from django_realtime.feeds.views import WHOLE, view_of_request
from tests.integration.feeds.bindings import OwnJobs


def test_a_request_names_the_whole_feed_a_row_or_a_query() -> None:
    assert view_of_request("f", OwnJobs.queries, {"feed": "f"}) is WHOLE
    assert view_of_request("f", {}, {"pk": "7"}).describe() == {"pk": "7"}
    view = view_of_request(
        "f",
        OwnJobs.queries,
        {"query": "progress", **{"params": {"odd": False, "least": 3}}},
    )
    assert view.describe() == {
        "query": "progress",
        "params": {"least": 3, "odd": False},
    }
    assert (
        view.key
        == view_of_request(
            "f",
            OwnJobs.queries,
            {"query": "progress", "params": {"least": 3, "odd": False}},
        ).key
    )
    # A query that takes no parameters may be named without them.
    assert (
        view_of_request("f", OwnJobs.queries, {"query": "running"}).query == "running"
    )


@pytest.mark.parametrize(
    ("data", "code", "named"),
    [
        ({"query": "nope"}, "unknown_query", "progress, running, status"),
        ({"query": 3}, "unknown_query", "'3'"),
        ({"query": "status"}, "bad_parameters", "'status': a string"),
        ({"query": "status", "params": {"status": 1}}, "bad_parameters", "got '1'"),
        ({"query": "status", "params": {"status": "x" * 201}}, "bad_parameters", "200"),
        ({"query": "status", "params": {"status": "a", "b": 1}}, "bad_parameters", ""),
        (
            {"query": "progress", "params": {"least": True, "odd": True}},
            "bad_parameters",
            "'least' of the query 'progress' to be an integer",
        ),
        ({"query": "status", "params": ["running"]}, "bad_parameters", ""),
        ({"pk": 1, "query": "running"}, "bad_parameters", "not both"),
        ({"pk": [1]}, "bad_parameters", "row key"),
        ({"params": {}}, "bad_parameters", "only with"),
    ],
)
def test_a_malformed_view_is_refused_with_a_code_that_names_it(
    data: dict[str, Any], code: str, named: str
) -> None:
    with pytest.raises(RequestError) as refused:
        view_of_request("test.jobs", OwnJobs.queries, data)
    assert refused.value.code == code
    assert named in str(refused.value)


def test_a_query_takes_only_json_scalar_parameters() -> None:
    with pytest.raises(ValueError, match="'when' to be int, str or bool"):
        query(lambda qs, p: qs, when=float)
