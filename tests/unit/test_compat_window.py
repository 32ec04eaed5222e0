"""The version windows of the private APIs the package uses."""

import pytest

from django_realtime._compat import Window, parse_version

WINDOW = Window("daphne", (4, 1), (4, 3))


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("4.2.3", (4, 2, 3)),
        ("4.2.3rc1", (4, 2, 3)),
        ("26.10.0.post1", (26, 10, 0)),
        ("0.55", (0, 55)),
        ("dev", None),
        ("", None),
    ],
)
def test_a_version_is_read_up_to_its_first_non_numeric_part(text, numbers):
    assert parse_version(text) == numbers


@pytest.mark.parametrize("version", ["4.1", "4.1.0", "4.2.3", "4.2.99rc1"])
def test_versions_from_the_lowest_checked_up_to_the_bound_are_inside(version):
    assert WINDOW.contains(version)


@pytest.mark.parametrize("version", ["4.0.9", "4.3", "4.3.0", "5.0", "dev", None])
def test_versions_below_the_lowest_or_at_the_bound_and_beyond_are_outside(version):
    assert not WINDOW.contains(version)


def test_a_window_reads_as_the_requirement_it_stands_for():
    assert str(WINDOW) == "daphne >= 4.1, < 4.3"


def test_a_distribution_that_is_not_installed_is_outside_its_window():
    window = Window("no-such-distribution-here", (1,), (2,))

    assert window.installed() is None
    assert not window.covers_installed()
    assert window.describe_installed() == (
        "no-such-distribution-here none installed; checked: "
        "no-such-distribution-here >= 1, < 2"
    )
