"""A job's output: streamed live to ``<p>:job:<id>:out`` and kept as a capped tail for the record.

Commands hand in raw bytes (decoded here, incrementally, so a character split across two reads
survives); call jobs hand in text. Both end up as UTF-8 text in Redis.
"""

from __future__ import annotations

import codecs
import logging

import redis

log = logging.getLogger("jobbalancer.worker")

OUT_MAXLEN = 10_000  # entries kept in an output stream (approximate trim)
_UTF8 = codecs.getincrementaldecoder("utf-8")


def utf8_safe(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (lone surrogates) replaced, so Redis accepts it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


class Tail:
    """The last ``cap_bytes`` bytes written to one stream, and how many earlier bytes were dropped."""

    def __init__(self, cap_bytes: int) -> None:
        self.cap_bytes = cap_bytes
        self.dropped = 0
        self._buf = bytearray()

    def add(self, data: bytes) -> None:
        self._buf += data
        excess = len(self._buf) - self.cap_bytes
        if excess > 0:
            del self._buf[:excess]
            self.dropped += excess

    def text(self) -> str:
        """The tail as text, with a marker line on top when earlier output was cut."""
        data, dropped = bytes(self._buf), self.dropped
        if not dropped:
            return data.decode("utf-8", "replace")
        # The cut may have split a character: drop its stray continuation bytes instead of showing U+FFFD.
        skip = 0
        while skip < min(3, len(data)) and 0x80 <= data[skip] < 0xC0:
            skip += 1
        return f"[jobbalancer: {dropped + skip} earlier bytes truncated]\n" + data[skip:].decode("utf-8", "replace")


class Output:
    """Output of one job attempt: fd 1 (stdout) and fd 2 (stderr).

    Each fd must be written by one thread at a time; the two fds may be written concurrently.
    After :meth:`close`, writes still arriving (from a straggler holding a pipe) are ignored.
    """

    def __init__(self, client: redis.Redis, key: str, cap_bytes: int) -> None:
        self._client = client
        self._key = key
        self._tails = {1: Tail(cap_bytes), 2: Tail(cap_bytes)}
        self._decoders: dict[int, codecs.IncrementalDecoder] = {}  # made at a stream's first bytes: most have none
        self._closed = False
        self._warned = False

    def write_bytes(self, fd: int, data: bytes) -> None:
        if self._closed:
            return
        self._tails[fd].add(data)
        decoder = self._decoders.get(fd)
        if decoder is None:
            decoder = self._decoders[fd] = _UTF8("replace")
        self._send(fd, decoder.decode(data))

    def write_text(self, fd: int, text: str) -> None:
        if self._closed:
            return
        text = utf8_safe(text)
        self._tails[fd].add(text.encode("utf-8"))
        self._send(fd, text)

    def end(self, fd: int) -> None:
        """No more bytes on ``fd``: flush what the decoder held back (an incomplete character)."""
        decoder = self._decoders.get(fd)
        if not self._closed and decoder is not None:
            self._send(fd, decoder.decode(b"", final=True))

    def close(self) -> None:
        self._closed = True

    @property
    def stdout(self) -> str:
        return self._tails[1].text()

    @property
    def stderr(self) -> str:
        return self._tails[2].text()

    def _send(self, fd: int, text: str) -> None:
        if not text:
            return
        try:
            self._client.xadd(self._key, {"fd": str(fd), "data": text}, maxlen=OUT_MAXLEN, approximate=True)
        except redis.RedisError as exc:
            # The tail still goes into the record; only the live view has a gap. Say so once per job.
            if not self._warned:
                self._warned = True
                log.warning("cannot stream output to %s: %s", self._key, exc)
