"""A job's output: the capped tail with its marker, and the live stream (fakeredis)."""

from __future__ import annotations

import fakeredis

from jobbalancer.worker.output import Output, Tail


def test_a_tail_under_its_cap_is_the_whole_output() -> None:
    tail = Tail(10)
    tail.add(b"hello\n")
    assert (tail.text(), tail.dropped) == ("hello\n", 0)


def test_a_tail_over_its_cap_keeps_the_end_with_a_marker() -> None:
    tail = Tail(4)
    for chunk in (b"abc", b"defg", b"hi"):
        tail.add(chunk)
    assert tail.text() == "[jobbalancer: 5 earlier bytes truncated]\nfghi"


def test_a_cut_through_a_character_drops_its_remains_instead_of_garbling() -> None:
    tail = Tail(3)
    tail.add("xé!!".encode())  # é is two bytes: the cap keeps its second byte and "!!"
    assert tail.text() == "[jobbalancer: 3 earlier bytes truncated]\n!!"


def test_output_streams_chunks_and_keeps_a_character_split_across_reads() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    out = Output(client, "t:job:1:out", 1024)
    data = "päd\n".encode()
    out.write_bytes(1, data[:2])  # ends inside "ä"
    out.write_bytes(1, data[2:])
    out.write_text(2, "warn\ud800\n")  # a lone surrogate cannot go to Redis as it is
    out.end(1)
    out.end(2)
    chunks = [(fields["fd"], fields["data"]) for _, fields in client.xrange("t:job:1:out")]
    assert "".join(d for fd, d in chunks if fd == "1") == "päd\n"
    assert chunks[-1] == ("2", "warn?\n")
    assert (out.stdout, out.stderr) == ("päd\n", "warn?\n")


def test_output_after_close_is_ignored() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    out = Output(client, "t:job:2:out", 1024)
    out.write_bytes(1, b"kept\n")
    out.close()
    out.write_bytes(1, b"straggler\n")
    assert out.stdout == "kept\n"
    assert client.xlen("t:job:2:out") == 1
