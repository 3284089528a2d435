"""A helper whose stdin and stdout the portal streams (asyncio, constant memory):
large payloads written in chunks, large answers (downloads, zips, search results,
a terminal) read in chunks, the helper ended cleanly whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import IO, Any

import anyio
from prometheus_client import Histogram

from hpcportal.errors import PortalError
from hpcportal.runas.answers import decode_answer, unavailable

RUNAS_SECONDS = Histogram(
    "hpcportal_runas_seconds", "Time of one call through the run-as boundary", ["op"]
)


STREAM_LINE_LIMIT = 1024 * 1024
STREAM_CHUNK = 256 * 1024


class HelperStream:
    """One helper process whose stdin and stdout the caller streams.

    ``write`` feeds the payload (waiting while the pipe is full, so memory stays
    flat); ``answer`` reads the helper's JSON line (the header of a streamed answer,
    or the result after the payload), turning errors into typed ones; ``chunks`` and
    ``lines`` read what follows. ``aclose`` ends the helper if it still runs (SIGTERM,
    which sudo relays, then SIGKILL) and is safe to call more than once.
    """

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        stderr: IO[bytes],
        op: str,
        path: object,
    ) -> None:
        self.proc = proc
        self.op = op
        self.path = path
        self._stderr = stderr
        self._started = time.perf_counter()
        self._closed = False
        self.input_open = True

    async def write(self, data: bytes) -> bool:
        """Send payload bytes; False once the helper stopped reading (its answer says why)."""
        stdin = self.proc.stdin
        if not self.input_open or stdin is None:
            return False
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self.input_open = False
            return False
        return True

    async def end_input(self) -> None:
        stdin = self.proc.stdin
        if self.input_open and stdin is not None:
            self.input_open = False
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                stdin.close()
                await stdin.wait_closed()

    def _error_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read(4000).decode("utf-8", "replace").strip()

    async def answer(self, timeout: float = 120.0) -> dict[str, Any]:
        """The helper's next JSON line; a failure becomes its typed error."""
        stdout = self.proc.stdout
        assert stdout is not None
        line = await asyncio.wait_for(stdout.readline(), timeout)
        if not line:
            await asyncio.wait_for(self.proc.wait(), timeout)
            text = self._error_text()
            if text.startswith("sudo:"):
                raise unavailable(text)
            return decode_answer(line, text, self.path)
        return decode_answer(line, "", self.path)

    async def chunks(self, size: int = STREAM_CHUNK) -> AsyncIterator[bytes]:
        """The raw bytes after the header until the helper ends; a helper that fails
        mid-stream raises (so the server aborts the response rather than end it
        cleanly). The helper is closed whatever happens."""
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while data := await stdout.read(size):
                yield data
            await self._check_exit()
        finally:
            await self.aclose()

    async def lines(self) -> AsyncIterator[bytes]:
        """The JSON lines after the header until the helper ends (then closed)."""
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while line := await stdout.readline():
                yield line
            await self._check_exit()
        finally:
            await self.aclose()

    async def _check_exit(self) -> None:
        code = await self.proc.wait()
        if code != 0:
            raise PortalError(f"The run-as helper stopped mid-stream: {self._error_text()[:300]}")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        proc = self.proc
        with anyio.CancelScope(shield=True):
            if proc.returncode is None and proc.stdout is not None and proc.stdout.at_eof():
                # The helper has said all it will and is exiting: wait for that rather
                # than terminate it, since runuser answers a relayed SIGTERM by sleeping
                # 2 s before it exits.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 2)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 3)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            self._stderr.close()
        RUNAS_SECONDS.labels(self.op).observe(time.perf_counter() - self._started)
