"""One request/response exchange: decision, upstream attempt(s), relay, deadlines, finish.

Theory of operation. An exchange moves through: started (handler.begin called) →
deciding (only if begin returned an awaitable: a future is waited on with a done
callback, anything else runs in one task) → connecting (only when the
pool has no idle connection: one task) → attached (request head and body stream to the
upstream) → responding (response head sent; body relayed, re-framed) → finished
(handler.finish called exactly once). A failure before the response head maps to a
canned response (errors.response_for); after it, the client connection is cut.

Retries: a failure before any response byte, while no request-body byte has left us,
may be retried: once silently when the failed connection came from the pool (the
upstream closed it as we reused it: the keep-alive race Go's transport also retries),
otherwise through `Forward.retry`, bounded by `max_attempts`. Deadlines come from the
`Deadlines` base (deadlines.py); one that passes fails the exchange with its ErrorKind:
504 if no head was sent, else the connection is cut. The bytes of the heads it sends
(forwarding headers, framing, the relayed 101) are built by wire.py.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import isfuture
from typing import TYPE_CHECKING

from .deadlines import Deadlines
from .errors import INTERNAL_ERROR, ErrorKind, ProxyError, response_for
from .hooks import Forward, LocalResponse, Outcome, RequestHead
from .wire import (
    CONTINUE, CRLF, HTTP11, LAST_CHUNK, add_forwarding_headers, request_head, response_head,
    upgrade_response_head,
)

if TYPE_CHECKING:
    from .protocol import ClientConnection
    from .upstream import UpstreamConnection

logger = logging.getLogger(__name__)

_PAUSE_WAIT = 2       # mirrors protocol.PAUSE_WAIT (kept here to avoid an import cycle)
_PAUSE_UPSTREAM = 4
_PAUSE_UPGRADE = 8


class Exchange(Deadlines):
    """The engine's state for one request; created by the client connection."""

    __slots__ = (
        "conn", "head", "upgrade_value", "is_head_request", "tunnel", "tunnel_pending",
        "body_buf", "body_done", "body_sent", "forward", "upstream", "upstream_addr", "task",
        "status", "head_sent", "resp_chunked", "resp_close_delimited", "client_keep",
        "response_bytes", "finished", "prepared", "fresh_retry", "held",
    )

    def __init__(self, conn: ClientConnection, head: RequestHead, upgrade_value: bytes) -> None:
        self.conn = conn
        self.head = head
        self.upgrade_value = upgrade_value
        self.is_head_request = head.method == b"HEAD"
        self.tunnel = False
        self.tunnel_pending = b""
        self.body_buf: list[bytes] | None = None
        self.body_done = not head.has_body
        self.body_sent = False
        self.forward: Forward | None = None
        self.upstream: UpstreamConnection | None = None
        self.upstream_addr: tuple[str, int] | None = None
        self.task: asyncio.Future | None = None
        self.status = 0
        self.head_sent = False
        self.resp_chunked = False
        self.resp_close_delimited = False
        self.client_keep = False
        self.response_bytes = 0
        Deadlines.__init__(self, conn.loop)
        self.finished = False
        self.prepared = False
        self.fresh_retry = False
        self.held: list[bytes] | None = None  # client writes held during one upstream read

    # -- deciding ------------------------------------------------------------------------
    def start(self) -> None:
        """Ask the handler what to do with this request."""
        server = self.conn.server
        self.head.arrival = server.clock.now()
        self.t0 = self.loop.time()
        try:
            decision = server.handler.begin(self.head)
        except ProxyError as exc:
            self._fail(ErrorKind.REJECTED, exc.response())
            return
        except Exception:
            logger.exception("handler.begin raised")
            self._fail(ErrorKind.HANDLER, INTERNAL_ERROR)
            return
        self._apply(decision)

    def _apply(self, decision) -> None:
        if isinstance(decision, Forward):
            self._forward(decision)
        elif isinstance(decision, LocalResponse):
            self._respond_local(decision)
        else:
            self._wait(decision)

    def _wait(self, awaitable) -> None:
        if not self.body_done:
            self.conn.pause_reading(_PAUSE_WAIT)  # the body has nowhere to go yet
        if self.forward is None:  # a retry's wait keeps the first Forward's deadlines
            # All three run from arrival while nothing is written (Knative's timeout
            # handler wraps the breaker): the idle clock starts at arrival too.
            head = self.head
            self._set_deadlines(head.timeout_s, head.response_start_timeout_s, head.idle_timeout_s)
        # A future (a breaker's parked place) is waited on with a done callback alone; any
        # other awaitable (a coroutine) needs one task to run it.
        task = awaitable if isfuture(awaitable) else asyncio.ensure_future(awaitable, loop=self.loop)
        self.task = task
        task.add_done_callback(self._on_decided)

    def _on_decided(self, task: asyncio.Future) -> None:
        if self.task is not task:
            # We dropped it (timeout, client gone); still consume its outcome so an
            # exception raised while it was being cancelled is not reported as lost.
            if not task.cancelled() and task.exception() is not None:
                logger.error("abandoned handler decision raised", exc_info=task.exception())
            return
        self.task = None
        if task.cancelled():
            self._fail(ErrorKind.HANDLER, INTERNAL_ERROR)
            return
        exc = task.exception()
        if isinstance(exc, ProxyError):
            self._fail(ErrorKind.REJECTED, exc.response())
        elif exc is not None:
            logger.error("handler decision raised", exc_info=exc)
            self._fail(ErrorKind.HANDLER, INTERNAL_ERROR)
        else:
            self._apply(task.result())

    def _respond_local(self, response: LocalResponse) -> None:
        keep = self._local_keep_alive()
        self._write_local(response, not keep)
        self._finish(None, True, local=True)
        self.conn.exchange_done(self, keep)

    # -- forwarding -------------------------------------------------------------------
    def _forward(self, forward: Forward) -> None:
        self.forward = forward
        head = self.head
        total, start, idle = forward.timeout_s, forward.response_start_timeout_s, forward.idle_timeout_s
        self._set_deadlines(
            head.timeout_s if total is None else total,
            head.response_start_timeout_s if start is None else start,
            head.idle_timeout_s if idle is None else idle,
        )
        if not self.prepared:
            self._prepare()
        self._connect(forward.upstream, fresh=False)

    def _prepare(self) -> None:
        """Forwarding headers, once per request (retries must not append twice)."""
        self.prepared = True
        head = self.head
        add_forwarding_headers(head.headers, head.client_ip, self.forward.upstream,
                               self.conn.server.config.forwarded_shim)

    def _connect(self, addr: tuple[str, int], fresh: bool) -> None:
        self.upstream_addr = addr
        pool = self.conn.server.pool
        up = None if fresh else pool.try_acquire(addr)
        if up is not None:
            self._attach(up)
            return
        if not self.body_done:
            self.conn.pause_reading(_PAUSE_WAIT)
        self.task = self.loop.create_task(pool.connect(addr))
        self.task.add_done_callback(self._on_connected)

    def _on_connected(self, task: asyncio.Future) -> None:
        if self.task is not task:
            if not task.cancelled() and task.exception() is None:
                task.result().close()  # connected just as we gave up
            return
        self.task = None
        if task.cancelled() or task.exception() is not None:
            self._upstream_failed(ErrorKind.UPSTREAM_CONNECT, None)
            return
        self._attach(task.result())

    def _attach(self, up: UpstreamConnection) -> None:
        self.upstream = up
        up.exchange = self
        transport = up.transport
        transport.write(request_head(self.head, self.upgrade_value))
        if self.body_buf:
            for chunk in self.body_buf:
                self._send_body(chunk)
            self.body_buf = None
        if self.body_done and self.head.chunked:
            transport.write(LAST_CHUNK)
        if self.conn.write_paused:
            up.set_reading(False)
        self.conn.resume_reading(_PAUSE_WAIT)

    def _send_body(self, chunk: bytes) -> None:
        if self.head.chunked:
            self.upstream.transport.writelines((b"%x\r\n" % len(chunk), chunk, CRLF))
        else:
            self.upstream.transport.write(chunk)
        self.body_sent = True

    # -- request body events (from the client parser) ---------------------------------------
    def request_body(self, chunk: bytes) -> None:
        """A piece of the request body arrived."""
        if self.finished or not chunk:
            return
        if self.upstream is not None:
            self._send_body(chunk)
        elif self.body_buf is None:
            self.body_buf = [chunk]
        else:
            self.body_buf.append(chunk)

    def request_complete(self) -> None:
        """The request body (if any) is complete."""
        self.body_done = True
        if not self.finished and self.upstream is not None and self.head.chunked:
            self.upstream.transport.write(LAST_CHUNK)

    def request_broken(self, response: LocalResponse) -> None:
        """The request body was malformed mid-way: answer if we still can, else cut."""
        self._fail(ErrorKind.REJECTED, None if self.head_sent else response)

    # -- response events (from the upstream connection) --------------------------------------
    def upstream_interim(self, status: int) -> None:
        """A 1xx other than 101: relay 100 Continue to a client that asked for it."""
        if status == 100 and self.head.expect_continue and self.head.version == HTTP11:
            self._to_client(CONTINUE)

    def upstream_head(self, up: UpstreamConnection) -> None:
        """The final response head: re-frame it for the client (wire.py) and send it."""
        head = self.head
        wire, self.client_keep, self.resp_chunked, self.resp_close_delimited = response_head(
            up.status, up.headers, up.content_length, up.chunked, self.is_head_request,
            head.version == HTTP11, head.keep_alive and not self.conn.close_after and not head.upgrade,
        )
        self.status = up.status
        self.head_sent = True
        self._to_client(wire)
        if self.timer is not None and self.d_start is not None:
            self._rearm()

    def upstream_body(self, chunk: bytes) -> None:
        """A piece of the response body: relay it (re-chunked if needed)."""
        if not chunk:
            return
        held = self.held
        if self.resp_chunked:
            pieces = (b"%x\r\n" % len(chunk), chunk, CRLF)
            if held is not None:
                held.extend(pieces)
            else:
                self.conn.transport.writelines(pieces)
        elif held is not None:
            held.append(chunk)
        else:
            self.conn.transport.write(chunk)
        self.response_bytes += len(chunk)
        if self.idle_s is not None:
            self.last_write = self.loop.time()

    def upstream_complete(self, up: UpstreamConnection) -> None:
        """The response is complete: pool the upstream, finish, go on with the client."""
        if self.finished:
            return
        if self.resp_chunked:
            self._to_client(LAST_CHUNK)
        self.upstream = None
        if not self.body_done:
            up.keep_alive = False  # the upstream answered before reading all the body
        self.conn.server.pool.release(up)
        self._finish(None, True)
        self.conn.exchange_done(self, self.client_keep and self.body_done)

    def upstream_lost(self, up: UpstreamConnection) -> None:
        """The upstream connection closed while this exchange used it."""
        if self.finished:
            return
        self.upstream = None
        if self.tunnel:
            self._finish(None, True)
            self.conn.exchange_done(self, False)
        elif self.head_sent:
            if self.resp_close_delimited:
                up.keep_alive = False
                self.upstream_complete(up)  # the close is how this body ends
            else:
                self._fail(ErrorKind.UPSTREAM_BROKEN)
        else:
            self._upstream_failed(ErrorKind.UPSTREAM_RESET, up)

    def upstream_bad_response(self, up: UpstreamConnection) -> None:
        """The upstream sent bytes httptools rejects."""
        if self.finished:
            return
        self.upstream = None
        up.exchange = None
        self._fail(ErrorKind.UPSTREAM_BROKEN if self.head_sent else ErrorKind.UPSTREAM_BAD_RESPONSE)

    def upstream_upgraded(self, up: UpstreamConnection, rest: bytes) -> None:
        """A 101 for our upgrade request: relay it and tunnel raw bytes both ways."""
        if up.status != 101 or not self.head.upgrade:
            self.upstream_bad_response(up)
            up.close()
            return
        wire = upgrade_response_head(up.headers, up.upgrade_value)
        self.flush()  # a relayed 100 Continue goes before the 101
        self.status = 101
        self.head_sent = True
        self.tunnel = True
        self._disarm()  # hijacked connections are not subject to request timeouts
        self.conn.transport.write(wire)
        if rest:
            self.conn.transport.write(rest)
        if self.tunnel_pending:
            up.transport.write(self.tunnel_pending)
            self.tunnel_pending = b""
        self.conn.resume_reading(_PAUSE_UPGRADE | _PAUSE_WAIT)

    def tunnel_to_client(self, data: bytes) -> None:
        """Raw upgraded bytes from the upstream."""
        self.conn.transport.write(data)

    def tunnel_to_upstream(self, data: bytes) -> None:
        """Raw upgraded bytes from the client."""
        if self.upstream is not None:
            self.upstream.transport.write(data)

    def upstream_write_paused(self, paused: bool) -> None:
        """Request-direction backpressure: stop reading the client while upstream is full."""
        if paused:
            self.conn.pause_reading(_PAUSE_UPSTREAM)
        else:
            self.conn.resume_reading(_PAUSE_UPSTREAM)

    # -- client events ----------------------------------------------------------------------
    def client_write_paused(self, paused: bool) -> None:
        """Response-direction backpressure: stop reading the upstream while the client is full."""
        if self.upstream is not None:
            self.upstream.set_reading(not paused)

    def client_lost(self) -> None:
        """The client connection closed."""
        if self.finished:
            return
        if self.tunnel:
            if self.upstream is not None:
                self.upstream.close()
                self.upstream = None
            self._finish(None, True)
            return
        self._fail(ErrorKind.CLIENT_GONE)

    def cut(self) -> None:
        """Shutdown deadline passed: answer 503 if nothing was sent, else cut."""
        self._fail(ErrorKind.SHUTDOWN)

    # -- failure and finish ---------------------------------------------------------
    def _upstream_failed(self, kind: ErrorKind, up: UpstreamConnection | None) -> None:
        if self.body_sent or self.conn.closed:
            self._fail(kind)
            return
        if up is not None and up.reused and not self.fresh_retry:
            self.fresh_retry = True
            self._connect(self.upstream_addr, fresh=True)
            return
        head = self.head
        head.attempts += 1
        retry = self.forward.retry if self.forward is not None else None
        if retry is not None and head.attempts < self.conn.server.config.max_attempts:
            try:
                decision = retry(head, kind)
            except Exception:
                logger.exception("retry hook raised")
                decision = None
            if decision is not None:
                self._apply(decision)
                return
        self._fail(kind)

    def _fail(self, kind: ErrorKind, response: LocalResponse | None = None) -> None:
        if self.finished:
            return
        self._cancel_task()
        up = self.upstream
        if up is not None:
            self.upstream = None
            up.exchange = None
            up.abort()
        conn = self.conn
        if response is None:
            response = response_for(kind, self.head_sent)
        if response is not None and not conn.closed:
            keep = self._local_keep_alive()
            self._write_local(response, not keep)
            self._finish(kind, True, local=self.forward is None)
            conn.exchange_done(self, keep)
            return
        self._finish(kind, False)
        conn.active = None
        conn.close_after = True
        if not conn.closed:
            conn.transport.abort()  # never a second status line: the cut is the signal

    def _cancel_task(self) -> None:
        task = self.task
        if task is not None:
            self.task = None
            task.cancel()

    def _local_keep_alive(self) -> bool:
        head = self.head
        return (
            head.keep_alive and head.version == HTTP11 and self.body_done
            and not head.upgrade and not self.conn.close_after
        )

    def _write_local(self, response: LocalResponse, close: bool) -> None:
        self.status = response.status
        self.head_sent = True
        self._to_client(response.wire(close, self.is_head_request))

    def _to_client(self, data: bytes) -> None:
        held = self.held
        if held is not None:
            held.append(data)
        else:
            self.conn.transport.write(data)
        if self.idle_s is not None:
            self.last_write = self.loop.time()

    # -- one client write per upstream read ----------------------------------------------
    # A small response arrives in one upstream read; relayed as parsed it would cost two
    # or three write syscalls (head, body, last chunk), and writes were half the proxy's
    # CPU in a py-spy --native profile. The upstream connection holds our client writes
    # while it feeds the parser and flushes them once at the end of the read.
    def hold(self) -> None:
        """Keep client writes in a list until `flush()` (called around one upstream read)."""
        self.held = []

    def flush(self) -> None:
        """Write what was held in one call (one writev), and stop holding."""
        held = self.held
        if held is None:
            return
        self.held = None
        if held and not self.conn.closed:
            if len(held) == 1:
                self.conn.transport.write(held[0])
            else:
                self.conn.transport.writelines(held)

    def _deadline_passed(self, kind: ErrorKind) -> None:
        if not self.finished and not self.tunnel:
            self._fail(kind)

    def _finish(self, kind: ErrorKind | None, completed: bool, local: bool = False) -> None:
        if self.finished:
            return
        self.finished = True
        self.flush()  # before exchange_done may close the connection
        self._disarm()
        server = self.conn.server
        outcome = Outcome(
            self.status, completed, kind, self.upstream_addr, local, self.response_bytes,
            server.clock.now(),
        )
        try:
            server.handler.finish(self.head, outcome)
        except Exception:
            logger.exception("handler.finish raised")
