"""daphne's objects for one upgraded WebSocket connection, in process.

No socket and no running reactor: a Twisted ``StringTransport`` stands for
the TCP transport (optionally under Twisted's TLS protocol), with Twisted's
own ``HTTPChannel`` registered as its producer, as daphne leaves it after
upgrading a connection, and daphne's own ``Server.create_application``
hands the application its ``send``. The tests of
:mod:`django_realtime._compat.daphne` and of the flow-control gate drive
the write buffer's pause and resume through the channel, as the transport
would.
"""

from __future__ import annotations

import asyncio
from typing import Any

# daphne installs its reactor on import, as it does in a server.
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet.protocol import Factory
from twisted.internet.testing import StringTransport
from twisted.web.http import HTTPChannel

from django_realtime.types import ASGIApp

__all__ = ["DaphneConnection", "tls_options"]


class _TCPTransport(StringTransport):  # type: ignore[misc]
    """A ``StringTransport`` with the TCP option ``HTTPChannel`` sets."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


def tls_options() -> Any:
    """Return Twisted server TLS options with a fresh self-signed certificate."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from twisted.internet import ssl

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ssl.PrivateCertificate.loadPEM(pem).options()


class DaphneConnection:
    """One WebSocket connection as daphne holds it once upgraded.

    Args:
        tls: Put Twisted's TLS protocol between the channel and the TCP
            transport, as daphne's ``ssl:`` endpoint does.

    Attributes:
        server: daphne's ``Server`` (not running).
        protocol: daphne's ``WebSocketProtocol`` of the connection.
        channel: The ``HTTPChannel`` the connection was upgraded from.
        tcp: The TCP transport; its ``producerState`` says whether the
            connection reads (``"producing"``) or not (``"paused"``).
        transport: What the protocol writes to: ``tcp``, or the TLS
            protocol over it.
        delivered: The messages daphne passed on to the protocol (which
            would turn them into frames).
    """

    def __init__(self, tls: bool = False) -> None:
        self.server = Server(application=None, endpoints=["tcp:port=0"])
        self.server.connections = {}
        self.tcp = _TCPTransport()
        self.channel = HTTPChannel()
        if tls:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(
                tls_options(), False, Factory.forProtocol(HTTPChannel)
            )
            wrapper = factory.buildProtocol(None)
            wrapper.makeConnection(self.tcp)
            self.channel = wrapper.wrappedProtocol
            self.transport: Any = wrapper
        else:
            self.channel.makeConnection(self.tcp)
            self.transport = self.tcp
        # The upgrade request never finishes, so the channel leaves reading
        # alone when the write buffer fills (daphne's state once upgraded).
        self.channel._handlingRequest = True
        self.protocol = WebSocketProtocol()
        self.protocol.client_addr = ["127.0.0.1", 50000]
        self.protocol.path = "/ws/"
        self.delivered: list[Any] = []
        self.protocol.handle_reply = self.delivered.append
        # daphne's upgrade hands the transport over to the WebSocket protocol.
        self.protocol.transport = self.transport
        self.server.protocol_connected(self.protocol)

    async def start(self, application: ASGIApp) -> asyncio.Future[Any]:
        """Run ``application`` for the connection, as daphne does; return its task."""
        self.server.application = application
        self.server.create_application(
            self.protocol, {"type": "websocket", "path": "/ws/", "headers": []}
        )
        task: asyncio.Future[Any] = self.server.connections[self.protocol][
            "application_instance"
        ]
        await asyncio.sleep(0)  # let the application start
        return task

    def write_buffer_full(self) -> None:
        """Pause the producers, as the transport does past its high-water mark."""
        self.tcp.producer.pauseProducing()

    def write_buffer_drained(self) -> None:
        """Resume the producers, as the transport does once it has drained."""
        self.tcp.producer.resumeProducing()

    def lose(self) -> None:
        """Lose the connection: daphne drops later sends, producers stop."""
        self.server.protocol_disconnected(self.protocol)
        self.tcp.producer.stopProducing()
