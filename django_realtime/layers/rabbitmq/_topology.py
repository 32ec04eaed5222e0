"""Declarations on the broker: queues, the groups exchange, bindings.

Each is one AMQP method on the link's publishing channel, run on the
link's loop, with the broker's refusals turned into
:exc:`~django_realtime.exceptions.ChannelLayerError` by
:meth:`~._link.Link.operate`.
"""

from __future__ import annotations

from aio_pika.abc import AbstractChannel, ExchangeType
from aiormq.abc import FieldTable

from django_realtime.layers.rabbitmq._link import Link

__all__ = ["PROCESS_QUEUE_ARGUMENTS", "Topology", "channel_arguments"]

#: A process queue outlives its process by a minute unused (x-expires):
#: long enough to reconnect, short enough to clean up after a process that
#: ended without closing its layer. Its bindings go with it.
PROCESS_QUEUE_ARGUMENTS: FieldTable = {"x-expires": 60_000}


def channel_arguments(capacity: int, expiry: float) -> FieldTable:
    """Return the arguments of a normal channel's queue.

    The broker refuses a publish beyond ``capacity`` messages (the
    publisher's confirm is a nack), and drops messages older than
    ``expiry``; a queue unused for twice that (at least five minutes) is
    deleted.
    """
    return {
        "x-max-length": capacity,
        "x-overflow": "reject-publish",
        "x-message-ttl": round(expiry * 1000),
        "x-expires": round(max(expiry * 2, 300.0) * 1000),
    }


class Topology:
    """Declare what the layer needs on the broker.

    Args:
        link: The layer's connection.
        exchange: The name of the groups exchange.
    """

    def __init__(self, link: Link, exchange: str) -> None:
        self._link = link
        self.exchange = exchange

    async def declare_queue(self, queue: str, arguments: FieldTable) -> None:
        """Declare a non-durable queue with ``arguments`` (idempotent)."""

        async def declare(publisher: AbstractChannel) -> object:
            return await publisher.declare_queue(queue, arguments=arguments)

        await self._link.operate(f"declare the queue {queue!r}", declare)

    async def declare_exchange(self) -> None:
        """Declare the groups exchange (idempotent)."""
        exchange = self.exchange

        async def declare(publisher: AbstractChannel) -> object:
            return await publisher.declare_exchange(exchange, ExchangeType.DIRECT)

        await self._link.operate(f"declare the exchange {exchange!r}", declare)

    async def delete_exchange(self) -> None:
        """Delete the groups exchange, and every binding with it."""
        exchange = self.exchange

        async def delete(publisher: AbstractChannel) -> object:
            handle = await publisher.get_exchange(exchange, ensure=False)
            return await handle.delete()

        await self._link.operate(f"delete the exchange {exchange!r}", delete)

    async def purge(self, queue: str) -> None:
        """Drop the messages in ``queue``; do nothing if it does not exist."""

        async def purge(publisher: AbstractChannel) -> object:
            handle = await publisher.get_queue(queue, ensure=False)
            return await handle.purge()

        await self._link.operate(f"purge the queue {queue!r}", purge)

    async def bind(self, queue: str, group: str, channel: str, join: str) -> bool:
        """Bind ``queue`` to ``group`` for one membership.

        Returns ``False`` if ``queue`` does not exist (its process ended).
        """
        arguments: FieldTable = {"c": channel, "j": join}

        async def bind(publisher: AbstractChannel) -> object:
            handle = await publisher.get_queue(queue, ensure=False)
            return await handle.bind(self.exchange, group, arguments=arguments)

        for _ in range(2):
            if await self._link.operate(f"bind {queue!r}", bind) is not None:
                return True
            # The exchange may have been deleted by a flush: declare it again.
            await self.declare_exchange()
        return False

    async def unbind(self, queue: str, group: str, channel: str, join: str) -> None:
        """Remove the binding of one membership."""
        arguments: FieldTable = {"c": channel, "j": join}

        async def unbind(publisher: AbstractChannel) -> object:
            handle = await publisher.get_queue(queue, ensure=False)
            return await handle.unbind(self.exchange, group, arguments=arguments)

        await self._link.operate(f"unbind {queue!r}", unbind)
