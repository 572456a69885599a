"""A TCP proxy a test can cut, refuse and freeze, to fault a client's connection for real."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``.

    ``cut()`` drops every open connection, ``refuse(True)`` closes new ones at
    once (a server that is down), ``freeze()`` stops forwarding on the open
    connections while keeping them open (a frozen server: only keepalive notices).
    """

    def __init__(self, target: str, source_host: str | None = None) -> None:
        """``source_host``: the local address the proxy connects from (``127.0.0.2``
        makes the server see another network source than the test's own calls)."""
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._local = (source_host, 0) if source_host else None
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._refusing = False
        self._frozen: set[asyncio.StreamWriter] = set()
        self.connections = 0

    @property
    def address(self) -> str:
        """``host:port`` to connect to."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def start(self) -> TcpProxy:
        """Start listening on a free port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                *self._target, local_addr=self._local
            )
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if sink in self._frozen:
                    await asyncio.Event().wait()  # frozen: hold the bytes forever
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.transport.abort()
            self._writers.discard(sink)

    def refuse(self, refusing: bool) -> None:
        """Close new connections at once (True) or forward them again (False)."""
        self._refusing = refusing

    def cut(self) -> None:
        """Drop every open connection abruptly."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def freeze(self) -> None:
        """Stop forwarding on the open connections, without closing them."""
        self._frozen |= self._writers

    async def close(self) -> None:
        """Stop listening and drop everything."""
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._pipes):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
