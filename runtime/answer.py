"""The interface between the HTTP server (``http.py``) and the proxy (``proxy.py``).

The server hands the proxy one API request and a :class:`Sink`; the proxy answers it
exactly once with an :class:`Answer`: at once for a refusal (415, 422, 413, 503), else
when the worker's result (or its loss, or the in-flight timeout) arrives. Every other
route is one ``await proxy.respond(...)`` returning an :class:`Answer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from .codec import JSON, error_body

Headers = Sequence[tuple[bytes, bytes]]
RETRY_SOON: Headers = ((b"retry-after", b"1"),)


class Answer(NamedTuple):
    """One HTTP response, before the server frames it (status line, content-type and
    content-length are the server's; ``headers`` are the extra ones)."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: Headers = ()


def error(status: int, message: str, headers: Headers = ()) -> Answer:
    """A JSON error answer; a 503 says when to retry (``Retry-After: 1`` unless given)."""
    if status == 503 and not headers:
        headers = RETRY_SOON
    return Answer(status, error_body(message), JSON, headers)


class Sink(Protocol):
    """Where one request's answer goes (the lean server's ``Reply``, a split request's part)."""

    def done(self) -> bool:
        """True once answered: later answers are ignored."""

    def answer(self, a: Answer, /) -> None:
        """Deliver the answer (the first call wins)."""
