"""The interface between the HTTP server (``http.py``) and the proxy (``proxy.py``).

:class:`App` is all the server uses of the proxy. It looks each request's path up
(``api``); an API request goes to ``start_api`` with a :class:`Sink`, which the proxy
answers exactly once with an :class:`Answer`: at once for a refusal (415, 422, 413, 503),
else when the worker's result (or its loss, or the in-flight timeout) arrives. Every other
route is one ``await respond(...)`` returning an :class:`Answer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from .codec import JSON, error_body

if TYPE_CHECKING:
    from jubako.runtime_settings import RuntimeSettings

    from .admission import Gate
    from .proxy import ApiState

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


class App(Protocol):
    """The proxy, as the HTTP server (``http.py``) sees it (``proxy.Proxy``)."""

    settings: RuntimeSettings
    gate: Gate  # the early refusals of API requests, made by the server (admission.py)

    async def startup(self) -> None: ...

    async def shutdown(self) -> None: ...

    def api(self, method: bytes, path: str) -> ApiState | None:
        """The API a request goes to (``POST`` to its route, under the root path), else None."""

    def start_api(self, st: ApiState, headers: Headers, body: bytes, sink: Sink) -> None:
        """Validate one API request and queue it; ``sink`` is answered once."""

    async def respond(self, method: str, path: str, headers: Headers) -> Answer:
        """Every other route (``path`` percent-decoded)."""

    def record(self, st: ApiState, status: int, seconds: float) -> None:
        """Count one API answer and its latency (the server's refusals included)."""
