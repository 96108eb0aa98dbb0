"""Server-sent events: bytes off the wire to the `data` payloads of complete events.

One parser, fed by the sync and the async read loops. It allocates per event, not per byte:
a whole network read is split at once.
"""

from __future__ import annotations

__all__ = ["DONE", "SSEParser"]

DONE = b"[DONE]"


class SSEParser:
    """Incremental SSE parser keeping only `data` fields (all a chat stream uses).

    Handles LF, CRLF and CR line ends (also split across reads), multi-line data,
    comments, and a last event without its blank line at end of stream (`flush`).
    """

    __slots__ = ("_tail", "_data", "_cr")

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []
        self._cr = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """Payloads of the events that `chunk` completes, in order."""
        if not chunk:
            return []  # an empty read must not forget a CR that may be half of a CRLF
        if self._cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split across two reads
        self._cr = False
        if b"\r" in chunk:
            self._cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._tail:
            chunk = self._tail + chunk
        lines = chunk.split(b"\n")
        self._tail = lines.pop()
        out: list[bytes] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    out.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            # other fields (event, id, retry) and comments carry nothing for chat streams
        return out

    def flush(self) -> list[bytes]:
        """Whatever the stream held when it ended without a final blank line."""
        out = self.feed(b"\n\n") if (self._tail or self._data) else []
        self._tail = b""
        return out
