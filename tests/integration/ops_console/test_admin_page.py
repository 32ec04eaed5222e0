"""The ops page in the admin: who may see it, what it shows, its actions."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import AsyncClient

from django_realtime.ops import drain
from django_realtime.ops.console import control, inventory, report
from django_realtime.testing import WebsocketCommunicator
from tests.integration.ops_console.consumers import as_user

pytestmark = [pytest.mark.usefixtures("with_admin"), pytest.mark.timeout(30)]


def log() -> Any:
    """Return the admin log's manager (the admin is installed by the fixture)."""
    from django.contrib.admin.models import LogEntry

    return LogEntry.objects


PAGE = "/admin/django_realtime/realtimeops/"
HERE = control.name_of(*report.whoami())


async def user(name: str, *, staff: bool = True, perms: tuple[str, ...] = ()) -> User:
    account = await User.objects.acreate_user(name, password="pw", is_staff=staff)
    async for permission in Permission.objects.filter(codename__in=perms):
        await account.user_permissions.aadd(permission)
    return account


async def client_of(account: User | None, **options: Any) -> AsyncClient:
    client = AsyncClient(**options)
    if account is not None:
        await client.aforce_login(account)
    return client


async def echo(name: str = "carol") -> WebsocketCommunicator:
    ws = WebsocketCommunicator(as_user(User(pk=42, username=name)), "/ws/echo/")
    assert (await ws.connect())[0]
    return ws


def number_of(ws_path: str = "/ws/echo/") -> list[int]:
    return [
        r.id
        for r in inventory.inventory.records()
        if r.connection.scope["path"] == ws_path
    ]


async def test_an_anonymous_visitor_is_sent_to_the_admin_login() -> None:
    response = await (await client_of(None)).get(PAGE)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


async def test_a_user_who_is_not_staff_is_sent_to_the_admin_login() -> None:
    account = await user("pat", staff=False, perms=("view_realtime_ops",))

    response = await (await client_of(account)).get(PAGE)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


async def test_staff_without_the_permission_are_refused() -> None:
    client = await client_of(await user("sam"))

    for url in (PAGE, PAGE + "fragment/", PAGE + "data.json"):
        assert (await client.get(url)).status_code == 403, url
    assert (await client.post(PAGE + "close/", {"process": HERE})).status_code == 403


async def test_the_page_lists_this_process_connections_with_their_details() -> None:
    ws = await echo()
    await ws.send_to(text_data="hello")
    await ws.receive_from()
    client = await client_of(await user("val", perms=("view_realtime_ops",)))

    response = await client.get(PAGE)

    assert response.status_code == 200
    page = response.content.decode()
    [number] = number_of()
    assert f'data-connection="{HERE}/{number}"' in page
    assert "carol (#42)" in page
    assert "/ws/echo/" in page
    assert "websocket" in page
    # Without the change permission: nothing to click.
    assert "Close" not in page
    assert "Drain this process" not in page
    await ws.disconnect()


async def test_the_index_links_the_page_for_those_who_may_see_it() -> None:
    client = await client_of(await user("val", perms=("view_realtime_ops",)))

    index = (await client.get("/admin/")).content.decode()

    assert PAGE in index
    assert "Real-time ops" in index


async def test_the_fragment_and_the_json_say_what_the_page_says() -> None:
    ws = await echo()
    client = await client_of(await user("val", perms=("view_realtime_ops",)))

    fragment = (await client.get(PAGE + "fragment/?seen=gone:1")).content.decode()
    data = (await client.get(PAGE + "data.json?seen=gone:1")).json()

    [number] = number_of()
    assert f'data-connection="{HERE}/{number}"' in fragment
    assert "gone:1 did not answer" in fragment
    assert data["silent"] == ["gone:1"]
    [mine] = [c for c in data["processes"][0]["connections"] if c["id"] == number]
    assert mine["user"] == "carol (#42)"
    await ws.disconnect()


async def test_closing_a_connection_closes_it_and_writes_the_admin_log() -> None:
    kept, closed = await echo("kim"), await echo("lee")
    number = number_of()[1]
    account = await user("oli", perms=("view_realtime_ops", "change_realtime_ops"))
    client = await client_of(account)
    page = (await client.get(PAGE)).content.decode()
    assert "Close" in page

    response = await client.post(
        PAGE + "close/", {"process": HERE, "connection": str(number)}
    )

    assert response.status_code == 302
    assert response["Location"] == PAGE
    message = await closed.receive_output()
    assert message["code"] == inventory.CLOSE_BY_OPERATOR
    assert message["reason"] == "closed by an operator"
    await kept.send_to(text_data="still here")
    assert await kept.receive_from() == "still here"
    entry = await log().aget()
    assert entry.user_id == account.pk
    assert entry.action_flag == 2  # CHANGE
    assert entry.object_id == f"{HERE}:{number}"
    assert entry.change_message == (
        "Closed the websocket connection of lee (#42) to /ws/echo/."
    )
    assert "Closed connection" in (await client.get(PAGE)).content.decode()
    await closed.disconnect()
    await kept.disconnect()


async def test_closing_a_connection_that_has_gone_writes_no_log() -> None:
    account = await user("oli", perms=("view_realtime_ops", "change_realtime_ops"))
    client = await client_of(account)

    await client.post(PAGE + "close/", {"process": HERE, "connection": "999999999"})

    assert not await log().aexists()
    assert "was not open any more" in (await client.get(PAGE)).content.decode()


async def test_an_action_without_the_change_permission_is_refused() -> None:
    ws = await echo()
    client = await client_of(await user("val", perms=("view_realtime_ops",)))
    [number] = number_of()

    response = await client.post(
        PAGE + "close/", {"process": HERE, "connection": str(number)}
    )

    assert response.status_code == 403
    await ws.send_to(text_data="open")
    assert await ws.receive_from() == "open"
    await ws.disconnect()


async def test_an_action_needs_a_post_with_the_csrf_token() -> None:
    account = await user("oli", perms=("view_realtime_ops", "change_realtime_ops"))
    client = await client_of(account, enforce_csrf_checks=True)

    assert (await client.get(PAGE + "drain/")).status_code == 405
    refused = await client.post(PAGE + "drain/", {"process": HERE})

    assert refused.status_code == 403
    assert not drain.is_draining()
    assert not await log().aexists()


async def test_a_badly_named_process_is_explained() -> None:
    account = await user("oli", perms=("view_realtime_ops", "change_realtime_ops"))
    client = await client_of(account)

    await client.post(PAGE + "drain/", {"process": "nonsense"})

    page = (await client.get(PAGE)).content.decode()
    assert "Expected a process as host:pid, got &#x27;nonsense&#x27;." in page


async def test_draining_this_process_closes_its_connections_and_writes_the_log() -> (
    None
):
    ws = await echo()
    account = await user("oli", perms=("view_realtime_ops", "change_realtime_ops"))
    client = await client_of(account)

    response = await client.post(PAGE + "drain/", {"process": HERE})

    assert response.status_code == 302
    assert drain.is_draining()
    message = await ws.receive_output(timeout=5)
    assert message["code"] == drain.CLOSE_SERVICE_RESTART
    await ws.disconnect()
    entry = await log().aget()
    assert entry.object_id == HERE
    assert entry.change_message.startswith("Drained (")
    assert "then accept connections again" in entry.change_message


async def test_a_group_given_the_permissions_as_the_docs_do_may_act() -> None:
    from django.contrib.auth.models import Group

    operators = await Group.objects.acreate(name="operators")
    await operators.permissions.aset(
        [
            p
            async for p in Permission.objects.filter(
                content_type__app_label="django_realtime",
                codename__in=["view_realtime_ops", "change_realtime_ops"],
            )
        ]
    )
    account = await user("gus")
    await account.groups.aadd(operators)
    client = await client_of(account)

    page = (await client.get(PAGE)).content.decode()

    assert "Drain this process" in page
