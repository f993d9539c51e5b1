"""The functions of an rq application (workers import them by path; nothing jobbalancer in here)."""

from __future__ import annotations


def count_words(text: str) -> int:
    return len(text.split())


def shout(text: str, suffix: str = "!") -> str:
    return text.upper() + suffix


def explode(message: str) -> None:
    raise ValueError(message)


def stamp(path: str, label: str) -> str:
    """Append ``label`` to the file at ``path``: lets a test see that (and how often) a job ran."""
    with open(path, "a") as out:
        out.write(label + "\n")
    return label


class Counter:
    """rq can enqueue a bound method (it pickles the instance); jobbalancer refuses to."""

    def count(self, text: str) -> int:
        return len(text)
