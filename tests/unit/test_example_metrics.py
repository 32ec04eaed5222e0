"""Who may read the example project's /metrics: the address check, pure."""

import pytest

from example_project.metrics import address_allowed

NETWORKS = ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]


@pytest.mark.parametrize(
    "address", ["10.0.0.1", "10.255.1.2", "127.0.0.1", "fd00::1", "::ffff:10.2.3.4"]
)
def test_addresses_of_the_allowed_networks_are_allowed(address: str) -> None:
    assert address_allowed(address, NETWORKS)


@pytest.mark.parametrize(
    "address",
    ["11.0.0.1", "127.0.0.2", "::1", "fe80::1", "::ffff:192.0.2.1", "", "unix:/s"],
)
def test_other_addresses_and_no_address_are_not(address: str) -> None:
    assert not address_allowed(address, NETWORKS)


def test_no_network_allows_no_address() -> None:
    assert not address_allowed("127.0.0.1", [])
