"""The degraded share: what one process may grant on its own while Redis is lost.

In ``local`` mode the in-process store is registered with this process's share of
each limit instead of the whole limit: the limit divided by the live processes seen
last (from the heartbeats), as a fractional budget apportioned to whole requests so
that the shares of all processes add up to exactly the limit. Each process gets
``limit // n``; the remainder ``limit % n`` goes to as many processes, chosen by their
rank among the members they all saw, starting at an offset of each key's own (so with
more processes than requests, different processes get different keys). A limit a
process gets no share of keeps that key (or group) out of its rotation. A capped
tenant's cap is cut the same way (under its window's name): a process with no share of
it refuses the tenant until Redis is back.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

from rotating_llm.limiter._schema import GROUP_MARK

__all__ = ["degraded_tail", "peer_rank", "share", "tenant_share", "unshared"]


def share(limit: int, name: str, n: int, rank: int) -> int:
    """This process's whole requests (or tokens) of ``limit`` (0: no limit, kept)."""
    if limit <= 0 or n <= 1:
        return limit
    base, extra = divmod(limit, n)
    offset = zlib.crc32(name.encode()) % n
    return base + (1 if (rank - offset) % n < extra else 0)


def peer_rank(members: Iterable[str], mine: str) -> tuple[int, int]:
    """``(n, rank)``: how many processes are live (this one included) and its place."""
    ordered = sorted(set(members) | {mine})
    return len(ordered), ordered.index(mine)


_LIMITS = ("rpm", "tpm", "rpd", "tpd")


def _scaled(limits: str, name: str, n: int, rank: int) -> str | None:
    """``limits`` ("rpm tpm rpd tpd ...") with each limit this process's share; ``None``
    if a limit leaves it nothing."""
    parts = limits.split(" ")
    for i in range(4):
        whole = int(parts[i])
        part = share(whole, name, n, rank)
        if whole > 0 and part <= 0:
            return None
        parts[i] = str(part)
    return " ".join(parts)


def unshared(limits: str, name: str, n: int, rank: int) -> str:
    """The first limit of ``limits`` this process has no share of ("rpm", "tpm", ...)."""
    parts = limits.split(" ")
    for i, what in enumerate(_LIMITS):
        whole = int(parts[i])
        if whole > 0 and share(whole, name, n, rank) <= 0:
            return what
    return _LIMITS[0]


def tenant_share(cap: str, name: str, n: int, rank: int) -> str | None:
    """A tenant's cap (the acquire's ``"rpm tpm 0 0 1 -"``) cut to this process's share
    of it under ``name`` (its window's id); ``None`` if the share is nothing."""
    return _scaled(cap, name, n, rank) if cap and n > 1 else cap


def degraded_tail(tail: Sequence[str], n: int, rank: int) -> list[str]:
    """A ``register`` tail (group pairs, then key / limits pairs) with every limit cut
    to this process's share; keys left without a share (or whose group is) are left out."""
    if n <= 1:
        return list(tail)
    out: list[str] = []
    dead: set[str] = set()
    pairs = [(tail[i], tail[i + 1]) for i in range(0, len(tail) - 1, 2)]
    for name, value in pairs:
        if name.startswith(GROUP_MARK):
            limits, members = value.split("|", 1)
            scaled = _scaled(limits, name, n, rank)
            if scaled is None:
                dead.add(name)
            else:
                out += [name, f"{scaled}|{members}"]
    for name, value in pairs:
        if name.startswith(GROUP_MARK):
            continue
        scaled = _scaled(value, name, n, rank)
        group = value.split(" ")[5]
        if scaled is not None and group not in dead:
            out += [name, scaled]
    return out
