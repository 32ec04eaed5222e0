"""Per-subscriber filters: what one subscriber of a stream is sent.

Most streams send every subscriber the same frame. A subscription may
instead have a :data:`PublicationFilter`, given by
:meth:`StreamConsumer.stream_filter()
<django_realtime.streams.StreamConsumer.stream_filter>` when the
subscription is allowed. The filter sees every publication of that
subscription, live and replayed, in offset order and in batches, and returns
for each the payload this subscriber gets (JSON text), or ``None`` to
withhold it. It is called on the event loop, one batch at a time for a
subscription, so it may keep state (what the subscriber has been sent)
and may await I/O, such as one database query for the whole batch.

A withheld publication keeps the stream's positions gap-free for the
client: the next ``publication`` frame it gets carries ``"withheld": n``,
the count of publications just before it that it was not sent (see
``docs/reference/streams-protocol.rst``). Withheld publications at the end
of a batch are counted into the next frame; a client that resumes from an
earlier position gets them through the filter again.

A filter may also have a ``withholds(publication)`` method, synchronous
and cheap: a live publication it returns ``True`` for is withheld as soon
as it is announced, without waking the connection's task, whenever the
connection has nothing else queued. It must only return ``True`` for what
the filter itself would withhold.

Subscriptions without a filter take none of this path.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence

from django_realtime.streams.positions import Publication

__all__ = ["FilteredDelivery", "PublicationFilter", "filtered_frame"]

#: A subscription's filter: the payloads (JSON text, or ``None``: withheld)
#: of a batch of its publications, one for each, in order.
PublicationFilter = Callable[[Sequence[Publication]], Awaitable[Sequence[str | None]]]


def filtered_frame(publication: Publication, data: str, withheld: int) -> str:
    """Return the ``publication`` frame of ``publication`` with payload ``data``.

    ``withheld`` is how many publications just before it the subscriber
    was not sent (the key is left out when it is 0).
    """
    stream, epoch = json.dumps(publication.stream), json.dumps(publication.epoch)
    extra = f'"withheld":{withheld},' if withheld else ""
    return (
        f'{{"kind":"publication","stream":{stream},"epoch":{epoch},'
        f'"offset":{publication.offset},{extra}"data":{data}}}'
    )


class FilteredDelivery:
    """The filter of one subscription, and what it withheld since the last frame.

    Args:
        publication_filter: The subscription's filter.
    """

    __slots__ = ("_withholds", "filter", "rendering", "withheld")

    def __init__(self, publication_filter: PublicationFilter) -> None:
        self.filter = publication_filter
        #: Publications withheld since the client's last frame of the stream.
        self.withheld = 0
        #: A render is under way: what is withheld now would be miscounted.
        self.rendering = False
        self._withholds: Callable[[Publication], bool] | None = getattr(
            publication_filter, "withholds", None
        )

    def withholds(self, publication: Publication) -> bool:
        """Return whether the filter withholds ``publication`` already (sync)."""
        return self._withholds is not None and self._withholds(publication)

    async def render(self, parts: Sequence[str | Publication]) -> list[str]:
        """Return the frames to send for ``parts``, in order.

        ``parts`` are frames of the stream that go out as they are
        (``subscribed``, ``lost``: each sets the client's position, so the
        count of withheld publications starts again after it) and
        publications, which go through the filter in one call.

        Raises:
            ValueError: the filter returned a different number of payloads.
        """
        publications = [part for part in parts if type(part) is Publication]
        self.rendering = True
        try:
            payloads = await self.filter(publications) if publications else ()
        finally:
            self.rendering = False
        if len(payloads) != len(publications):
            raise ValueError(
                f"Expected the filter to return {len(publications)} payloads, "
                f"got {len(payloads)}."
            )
        frames: list[str] = []
        results = iter(payloads)
        for part in parts:
            if type(part) is not Publication:
                self.withheld = 0
                frames.append(part)  # type: ignore[arg-type]  # a str
                continue
            data = next(results)
            if data is None:
                self.withheld += 1
                continue
            frames.append(filtered_frame(part, data, self.withheld))
            self.withheld = 0
        return frames
