"""The Redis history store: streams shared by every process of a site.

Each stream has two keys and one pub/sub channel under the store's prefix
(``rt`` by default); the stream's name is a Redis Cluster hash tag, so that
both keys of a stream live on one node:

- ``rt:{chat.7}:meta``: a hash with the stream's ``epoch``, its newest
  ``offset``, the ``bytes`` of payload its log keeps and when (``at``) the
  newest was published;
- ``rt:{chat.7}:log``: a Redis Stream of the kept publications, entry id
  ``<offset>-0``, fields ``d`` (the payload, JSON text) and ``t`` (when it
  was published, by the store's clock);
- ``rt:{chat.7}``: the channel on which each publication is announced, as
  ``<epoch> <offset> <payload>``;
- ``rt:{chat.7}:once:<key>``: the position of a publication made with
  :meth:`~RedisHistoryStore.publish_once` (a relayed outbox row), kept for
  ``expiry`` seconds so that the key is not published twice.

Publishing is one Lua script, so one round trip: it gives the payload the
next offset, appends it, trims the log to the stream's policy (by count,
bytes and age, exactly), refreshes the keys' time to live and announces
the publication. Reading is another script, an atomic snapshot of the
epoch, the window and what came after a position.

Semantics:

- **History is the source of truth.** Announcements are delivered at most
  once: those published while this process's pub/sub connection is down
  are lost. When it is back, every listener of every stream is told to
  resync (:meth:`~django_realtime.streams.stores.base.Listener.resync`)
  once Redis has confirmed the stream's subscription again, and reads what
  it missed from the log. Announcements of one stream are never reordered.
- **Epochs.** A stream whose meta hash is missing starts a new epoch with
  a fresh random name, at offset 1, so a position is never reused. The
  meta hash goes when the store is flushed, when Redis loses its data, and
  when the stream is not used (published to or read) for ``expiry``
  seconds, one day by default: clients coming back after that are told
  their epoch has changed.
- **Idle streams.** An age-bounded log expires on its own a minute after
  its newest entry became too old to replay. While some process listens
  to the stream, the stream keeps its epoch and offset, so connected
  clients of a quiet stream are not sent to reload; once nobody listens,
  its next use starts a new epoch, as after an expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from django_realtime.streams.positions import (
    History,
    HistoryPolicy,
    Position,
    Publication,
    recovery_of,
)
from django_realtime.streams.stores._redis_connections import (
    LoopConnections,
    describe,
)
from django_realtime.streams.stores._redis_scripts import PUBLISH_ONCE, policy_args
from django_realtime.streams.stores.base import HistoryStore, Listener, PolicyTable

__all__ = ["RedisHistoryStore"]

logger = logging.getLogger("django_realtime.streams")

_INSTALL = "python -m pip install 'django-realtime-framework[redis]'"
_CLIENT_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_FLUSH_BATCH = 500


class RedisHistoryStore(HistoryStore):
    """Keep streams in Redis; announce publications to every process.

    Publish, read and flush from any event loop: each loop gets its own
    connections, closed when the loop shuts down or by :meth:`close`. The
    pub/sub connection lives on the loop of the first :meth:`listen`;
    listening from another loop while that one runs goes through it.

    Args:
        url: The Redis URL.
        prefix: Prefix of every key and channel of this store.
        policies: Each stream's history policy.
        clock: Return the time in seconds; publication ages follow it.
        expiry: Seconds a stream's position outlives its last publish or
            read; after that the stream starts a new epoch.
        subscribe_timeout: Seconds :meth:`listen` waits for Redis to
            confirm a subscription.
        idle_timeout: Seconds a command connection may stay unused before
            it is closed. The most recently used one of each event loop
            stays open: once a burst is over, the loop is back to one.
        redis_kwargs: More keyword arguments for redis-py's
            ``BlockingConnectionPool.from_url``: ``max_connections`` (50)
            commands run at once per event loop, more wait up to
            ``timeout`` (20) seconds for a connection. Replies are always
            bytes, over RESP2.

    Raises:
        ImportError: redis-py is not installed.

    Attributes:
        client_name: The name (``CLIENT SETNAME``) of this store's command
            connections; its pub/sub connection's is this plus ``-pubsub``.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379",
        *,
        prefix: str = "rt",
        policies: PolicyTable | None = None,
        clock: Callable[[], float] = time.time,
        expiry: float = 86400.0,
        subscribe_timeout: float = 10.0,
        idle_timeout: float = 10.0,
        **redis_kwargs: Any,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError as error:
            raise ImportError(
                "RedisHistoryStore needs redis-py, which is not installed "
                f"({error}). Install it with: {_INSTALL}"
            ) from error
        super().__init__(policies, clock)
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"Expected a non-empty string prefix, got {prefix!r}.")
        for name, value in (
            ("expiry", expiry),
            ("subscribe_timeout", subscribe_timeout),
            ("idle_timeout", idle_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Expected {name} in seconds, got {value!r}.")
            if value <= 0:
                raise ValueError(f"Expected {name} > 0, got {value!r}.")
        self.prefix = prefix
        self.expiry = float(expiry)
        self.subscribe_timeout = float(subscribe_timeout)
        self.idle_timeout = float(idle_timeout)
        self.client_name = _CLIENT_NAME_UNSAFE.sub(
            "_", f"{prefix}-streams-{secrets.token_hex(4)}"
        )
        redis_kwargs.setdefault("client_name", self.client_name)
        # The pub/sub reader reads RESP2 arrays; replies stay bytes. redis-py
        # enforces socket_timeout with wait_for(), which can swallow a
        # cancellation on Python 3.11: the store bounds its own waits.
        redis_kwargs.update(protocol=2, decode_responses=False)
        redis_kwargs.setdefault("socket_timeout", None)
        self._url = url
        self._redis_kwargs = redis_kwargs
        self._where = describe(url)
        # A topic is "<prefix>:{<stream>}": the stream is between these.
        self._stream_start = len(prefix.encode()) + 2
        self._args: dict[HistoryPolicy, tuple[str, str, str, int, int]] = {}
        self._conns: dict[asyncio.AbstractEventLoop, LoopConnections] = {}
        # The connections whose subscriber holds the subscriptions.
        self._pubsub: LoopConnections | None = None
        # Streams whose subscription Redis has confirmed since they were
        # last wanted: confirmed again means announcements were missed.
        self._confirmed: set[str] = set()

    def __repr__(self) -> str:
        return f"<RedisHistoryStore {self._where} prefix={self.prefix!r}>"

    async def publish(self, stream: str, data: str) -> Publication:
        """Keep ``data`` at ``stream``'s next position and announce it.

        Raises:
            ValueError: the payload alone is over the stream's ``max_bytes``
                (no offset is used).
            redis.exceptions.ConnectionError: Redis cannot be reached.
        """
        policy = self.policies(stream)
        policy.check_size(stream, data)
        conns = self._conns.get(asyncio.get_running_loop()) or await self._open()
        base = f"{self.prefix}:{{{stream}}}"
        epoch, offset = await conns.publish(
            keys=[f"{base}:meta", f"{base}:log"],
            args=[
                secrets.token_hex(4),
                self.clock(),
                *(self._args.get(policy) or self._policy_args(policy)),
                base,
                data,
            ],
        )
        return Publication(stream, epoch.decode(), offset, data)

    async def publish_once(self, stream: str, data: str, key: str) -> Publication:
        """Publish ``data`` to ``stream`` unless ``key`` was published already.

        The key is remembered in Redis, beside the stream's keys, for as
        long as the stream's position (``expiry``); the check, the
        publication and the remembering are one atomic script. A repeated
        key publishes nothing and returns the first publication's position.

        Raises:
            ValueError: the payload alone is over the stream's ``max_bytes``.
            redis.exceptions.ConnectionError: Redis cannot be reached.
        """
        policy = self.policies(stream)
        policy.check_size(stream, data)
        conns = self._conns.get(asyncio.get_running_loop()) or await self._open()
        base = f"{self.prefix}:{{{stream}}}"
        script = conns.redis.register_script(PUBLISH_ONCE)
        epoch, offset, repeated = await script(
            keys=[f"{base}:meta", f"{base}:log", f"{base}:once:{key}"],
            args=[
                secrets.token_hex(4),
                self.clock(),
                *(self._args.get(policy) or self._policy_args(policy)),
                base,
                data,
            ],
        )
        if repeated:
            logger.debug("Key %r of stream %r was published already.", key, stream)
        return Publication(stream, epoch.decode(), offset, data)

    async def read(self, stream: str, since: Position | None = None) -> History:
        """Return what ``stream`` published after ``since``, and where it is now.

        Raises:
            redis.exceptions.ConnectionError: Redis cannot be reached.
        """
        policy = self.policies(stream)
        conns = self._conns.get(asyncio.get_running_loop()) or await self._open()
        base = f"{self.prefix}:{{{stream}}}"
        reply = await conns.read(
            keys=[f"{base}:meta", f"{base}:log"],
            args=[
                secrets.token_hex(4),
                self.clock(),
                *(self._args.get(policy) or self._policy_args(policy)),
                base,
                "" if since is None else since.epoch,
                "" if since is None else str(since.offset),
            ],
        )
        epoch: str = reply[0].decode()
        newest: int = reply[1]
        if since is None:
            return History(stream, epoch, newest)
        reason = recovery_of(since, epoch, newest, reply[2])
        if reason is not None:
            return History(stream, epoch, newest, reason=reason)
        # The log holds consecutive offsets: the first is the one after since.
        first = since.offset + 1
        return History(
            stream,
            epoch,
            newest,
            tuple(
                Publication(stream, epoch, first + index, data.decode())
                for index, data in enumerate(reply[3:])
            ),
        )

    async def listen(self, stream: str, listener: Listener) -> None:
        """Announce ``stream``'s new publications to ``listener``.

        Returns once Redis has confirmed this process's subscription to the
        stream, so that a publication made after it reaches ``listener``.

        Raises:
            redis.exceptions.ConnectionError: Redis did not confirm the
                subscription within ``subscribe_timeout``; ``listener`` is
                not added.
        """
        self.hub.add(stream, listener)
        try:
            await self._settle(stream)
        except BaseException:
            if self.hub.remove(stream, listener):
                with contextlib.suppress(Exception):
                    await self._settle(stream)
            raise

    async def unlisten(self, stream: str, listener: Listener) -> None:
        """Stop announcing ``stream`` to ``listener``; unsubscribe after the last."""
        if self.hub.remove(stream, listener):
            await self._settle(stream)

    async def flush(self) -> None:
        """Delete every key under this store's prefix: streams start new epochs."""
        conns = self._conns.get(asyncio.get_running_loop()) or await self._open()
        # The pattern ends in ":{", so prefix "t1" does not match "t10:{s}:log".
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + ":{*"
        batch: list[bytes] = []
        async for key in conns.redis.scan_iter(match=pattern, count=_FLUSH_BATCH):
            batch.append(key)
            if len(batch) >= _FLUSH_BATCH:
                await conns.redis.unlink(*batch)
                batch.clear()
        if batch:
            await conns.redis.unlink(*batch)

    async def close(self) -> None:
        """Close this store's connections on every event loop.

        Listeners are kept: the next :meth:`listen` subscribes again.
        """
        here = asyncio.get_running_loop()
        for loop, conns in list(self._conns.items()):
            if self._conns.get(loop) is not conns:
                continue
            del self._conns[loop]
            if loop is here:
                await self._close_here(conns)
            elif loop.is_running() and not loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(self._close_here(conns), loop)
                await asyncio.wrap_future(future)
            else:
                self._abandon(conns)

    # Internals: connections per event loop

    def _policy_args(self, policy: HistoryPolicy) -> tuple[str, str, str, int, int]:
        args = self._args[policy] = policy_args(policy, self.expiry)
        return args

    async def _open(self) -> LoopConnections:
        """Open the running loop's connections; close them when it shuts down."""
        loop = asyncio.get_running_loop()
        for other, conns in list(self._conns.items()):
            if other.is_closed() and self._conns.pop(other, None) is conns:
                self._abandon(conns)
        conns = self._conns[loop] = LoopConnections(
            loop=loop,
            url=self._url,
            redis_kwargs=self._redis_kwargs,
            client_name=self.client_name,
            where=self._where,
            subscribe_timeout=self.subscribe_timeout,
            on_message=self._announce,
            on_active=self._active,
            idle_timeout=self.idle_timeout,
        )
        # The loop's shutdown_asyncgens() (asyncio.run, asgiref's
        # async_to_sync) closes the generator while the loop still runs.
        conns.guard = self._guard(loop, conns)
        await anext(conns.guard)
        return conns

    async def _guard(
        self, loop: asyncio.AbstractEventLoop, conns: LoopConnections
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self._conns.get(loop) is conns:
                del self._conns[loop]
                await self._release(conns, loop_ended=True)

    async def _close_here(self, conns: LoopConnections) -> None:
        await self._release(conns, loop_ended=False)
        if conns.guard is not None:
            await conns.guard.aclose()

    async def _release(self, conns: LoopConnections, *, loop_ended: bool) -> None:
        if self._pubsub is conns:
            self._pubsub = None
            if loop_ended and self.hub.streams:
                logger.warning(
                    "The event loop of %r's pub/sub connection has ended while "
                    "%d stream(s) still have listeners: they get no "
                    "announcements until a listen() on a running loop.",
                    self,
                    len(self.hub.streams),
                )
        await conns.close()

    def _abandon(self, conns: LoopConnections) -> None:
        """Forget the connections of a loop that has stopped or closed."""
        if self._pubsub is conns:
            self._pubsub = None
        conns.stop_listening()
        guard, conns.guard = conns.guard, None
        if guard is not None:
            # Finish the generator here (its finally does nothing now): a dead
            # loop cannot finalise it.
            closing = guard.aclose()
            with contextlib.suppress(StopIteration):
                closing.send(None)

    # Internals: subscriptions

    async def _settle(self, stream: str) -> None:
        """Subscribe to ``stream`` if it has listeners, else unsubscribe.

        Runs on the pub/sub connection's loop; deciding from the listeners
        there (not from the caller's intent) keeps concurrent listen and
        unlisten calls right whatever order they arrive in.
        """
        loop = asyncio.get_running_loop()
        pubsub = self._pubsub
        if pubsub is not None and pubsub.loop is not loop:
            if pubsub.loop.is_running() and not pubsub.loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(
                    self._settle(stream), pubsub.loop
                )
                return await asyncio.wrap_future(future)
            # Its loop has stopped: this one takes over.
            self._pubsub = None
            pubsub.stop_listening()
            pubsub = None
        if pubsub is None:
            conns = self._conns.get(loop) or await self._open()
            if self._pubsub is None:
                self._pubsub = conns
                conns.listen([self._topic(s) for s in self.hub.streams])
            return await self._settle(stream)
        subscriber = pubsub.subscriber
        topic = self._topic(stream)
        if stream in self.hub:
            await subscriber.subscribe(topic)
        else:
            self._confirmed.discard(stream)
            await subscriber.unsubscribe([topic])

    def _topic(self, stream: str) -> str:
        return f"{self.prefix}:{{{stream}}}"

    def _announce(self, topic: bytes, payload: bytes) -> None:
        epoch, offset, data = payload.split(b" ", 2)
        self.hub.announce(
            Publication(
                topic[self._stream_start : -1].decode(),
                epoch.decode(),
                int(offset),
                data.decode(),
            )
        )

    def _active(self, topic: str) -> None:
        """Resync a stream whose subscription is confirmed again after a loss."""
        stream = topic[len(self.prefix) + 2 : -1]
        if stream not in self._confirmed:
            self._confirmed.add(stream)
            return
        logger.info(
            "Announcements of stream %r may have been lost while the pub/sub "
            "connection was down; its listeners read them from history.",
            stream,
        )
        try:
            self.hub.resync([stream])
        except Exception:
            logger.exception("A listener of stream %r failed to resync.", stream)
