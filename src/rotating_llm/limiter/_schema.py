"""The one declaration of what the limiter's Lua and Python exchange.

Every script argument, every reply field and the key layout are named here once. The
Python side builds arguments and parses replies with these names; the Lua side gets
the same names as numbered locals from :func:`lua_header`, which the script loader puts
in front of every script, so a script that uses a name not declared here fails to load
(Redis refuses unknown globals) and a test checks the rest.

Keys of one pool share its hash tag and carry the layout version::

    <prefix>v3:{<pool>}:avail         zset  key_id -> earliest instant it may admit
    <prefix>v3:{<pool>}:avail:<tier>  zset  the same, of the keys of a tier > 0
    <prefix>v3:{<pool>}:cfg           hash  key_id -> limits "rpm tpm rpd tpd weight group
                                            [tier]" (no tier: 0); ~tiers -> the pool's
                                            tiers ascending "0,2" (absent: all 0)
    <prefix>v3:{<pool>}:use           hash  key_id -> "cnt day n dt old seq|<limits>",
                                            key_id ":s" -> tokens held (an integer)
    <prefix>v3:{<pool>}:rpm:<key_id>  zset  "<reservation id>:<tokens>" -> instant
    <prefix>v3:{<pool>}:cooldown:<key_id>, backoff:<key_id>, disabled (hash)
    <prefix>v3:{<pool>}:req:<request id>  string  an acquire's grant, kept briefly so a
                                            resent acquire returns it (no second one)
    <prefix>v3:{<pool>}:procs, proc:<member>  heartbeats (keys/_heartbeat.py; no Lua)
    <prefix>v3:{<pool>}:dayseed:<id>  string  "<requests> <tokens> <day>" of the day's
                                            use a ``replay`` seeded (DAY_SEED below)
    <prefix>v3:{<pool>}:rates:<minute>  hash  "<code>:<key_id>" / "<code>" -> count of
                                            that minute (Redis's clock, RATES below)
    <prefix>v3:{<pool>}:groups        hash  @<group> -> its limits "rpm tpm rpd tpd 0 -",
                                            @<group>:k -> member key ids "k1,k2",
                                            @<group>:t -> their tiers "0,2" (absent: 0)
    <prefix>v3:{<pool>}:aff:<digest>  string  the key id that last served an affinity
    <prefix>v3:{<pool>}:learned       hash  "<kind>:<id>" -> a limit learned from the
                                            provider: "<value> <at_us> <expires_us>
                                            <flag> <source>" (LEARNED below)
    <prefix>v3:{<pool>}:q             zset  the waiters' queue: "<seq:012><ticket>" ->
                                            (MAX_PRIORITY - priority) * QUEUE_ROUND +
                                            round (lowest first; equal: by arrival)
    <prefix>v3:{<pool>}:qt            hash  ticket -> "<expires_us> <member> <prio>:<tenant
                                            digest> <est> <excluded k1,k2|->" (TICKET)
    <prefix>v3:{<pool>}:qc            zset  every ticket's "<prio>:<tenant digest>
                                            <round:010> <ticket>" -> 0 (by lex: a tenant's
                                            tickets in order; its last one is read)
    <prefix>v3:{<pool>}:qr            hash  <prio> -> round of the last ticket served,
                                            "<prio>:<tenant digest>" -> the round of the
                                            tenant's last turn (a ticket served, or a grant
                                            without one while its priority had waiters),
                                            ~seq arrivals, ~last / ~gap when and how
                                            often (EWMA, us) queued tickets were served,
                                            ~pass "<head ticket> <n>": grants that passed
                                            that head on keys too small for it
    channel <prefix>v3:{<pool>}:q           PUBLISH <ticket>: that ticket's turn may have
                                            come (the head after a grant, a purge, a
                                            release, a key re-enabled)

The queue's keys exist only while someone waits (the last ticket out deletes them, and
each expires QUEUE_KEYS_TTL_MS after its last change), so an acquire on a pool nobody
waits for costs one ``EXISTS``.
    <prefix>v3:{<pool>}:rpm:~t:<digest>  zset  a capped tenant's reservations (below)

A quota group is counted like a key named ``@<group>`` (:data:`GROUP_MARK`): its summary
``@<group>`` and token count ``@<group>:s`` in ``use`` (and ``@<group>:b`` while members
wait because of it), its reservations in ``rpm:@<group>`` as
``"<reservation id>@<key id>:<tokens>"``.

A capped tenant is counted the same way under ``~t:<digest>`` (:data:`TENANT_MARK`, the
acquire's ``tenant`` digest: names never reach Redis): its summary and token count in
``use``, its reservations in ``rpm:~t:<digest>`` as ``"<reservation id>@<key id>:<tokens>"``,
reserved by the acquire that grants (``tenant_cap``: its cap "rpm tpm 0 0 1 -", sent
with each acquire; '' none) and corrected or released by ``settle`` (``tenant``) with
the key's.
"""

from __future__ import annotations

from collections.abc import Sequence

from rotating_llm._bounds import MAX_PRIORITY, MAX_TICKET_SECONDS

__all__ = [
    "ARGS",
    "DAY_SEED",
    "GRANT",
    "GROUP_MARK",
    "HEAD",
    "LAYOUT_VERSION",
    "LEARNED",
    "LEARNED_GROUP",
    "LEARNED_GROUP_KIND",
    "LEARN_KINDS",
    "LIMITS",
    "QUEUE_KEYS_TTL_MS",
    "QUEUE_PASSES",
    "QUEUE_ROUND",
    "QUEUE_TICKET_MAX_MS",
    "RATES",
    "RATE_BUCKET_S",
    "RATE_TTL_S",
    "REFUSAL",
    "STATUS",
    "TENANT_MARK",
    "TENANT_REASON",
    "TICKET",
    "TIERS_FIELD",
    "lua_header",
    "pool_base",
]

#: Bumped whenever a key or field below changes meaning; part of every pool's keys.
LAYOUT_VERSION = 3

#: Arguments every pool script starts with: the window and four daily reset instants
#: (UTC microseconds, ascending) around now; the script picks today's by Redis's clock.
HEAD = ("window_us", "day_0", "day_1", "day_2", "day_3")

#: Arguments of each pool script (``ARGV``, 1-based in Lua), after which some take a
#: variable tail: ``register`` key id / limits pairs (or key ids to remove), ``status``
#: key ids. ``replay`` takes HEAD, an epoch token, a hold (ms), the processes to wait
#: for, a tag of the caller's, then quintuples id, member (without ``:<tokens>``),
#: instant (us), tokens, epoch granted under; it is left out of this table (and so of
#: the header's locals: an EVAL script has room for 200). A quintuple whose member is
#: :data:`DAY_SEED` followed by a count is not a reservation: see there.
ARGS: dict[str, tuple[str, ...]] = {
    "acquire": (
        *HEAD,
        *("est", "strategy", "random", "candidates", "exclude", "request_id"),
        *("affinity", "affinity_ttl_ms"),
        "tenant_cap",
        *("priority", "tenant", "ticket", "ticket_ms"),
    ),
    "queue": (*HEAD, "action", "ticket"),
    "settle": (
        *HEAD,
        *("key_id", "reservation_id", "reserved", "action", "value", "day", "daily", "group"),
        "outcome",
        "tenant",
        "granted_us",
    ),
    "count": (*HEAD, "code", "key_id"),
    "health": (*HEAD, "key_id", "action", "seconds", "reason", "backoff_base_s", "backoff_max_s"),
    "register": (*HEAD, "mode"),
    "status": HEAD,
    "learn": (*HEAD, "action", "target", "file", "ttl_us"),
}

#: A grant: one string, these fields separated by single spaces (key id last).
#: ``affinity``: ``-`` none was asked, ``1`` the affinity's key was chosen, ``0`` not;
#: ``tenant``: the tenant digest it was counted for under its cap, ``-`` none.
GRANT = ("reservation_id", "day", "now_us", "affinity", "tenant", "key_id")
#: A refusal: an array of these, then key id / reason pairs (:data:`TENANT_REASON` /
#: ``"tenant <rpm|tpm>"`` alone when the tenant's cap refused). ``code`` 0 is a refusal,
#: -1 says the pool's config is missing (register and call again). ``position``: the
#: waiters ahead of the caller in the pool's queue (-1: it has no ticket and none
#: outranks it); ``wait_us`` the expected wait there (-1: unknown). A caller behind the
#: head refused only because the head can use a key's room gets ``retry_after_us`` 0:
#: its turn is signalled, not timed.
REFUSAL = ("code", "retry_after_us", "now_us", "position", "wait_us")
#: A ticket's record in ``qt`` (fields separated by single spaces).
TICKET = ("expires_us", "member", "class", "estimate", "exclusions")
#: The span of rounds of one priority in the queue's scores (exact in a double).
QUEUE_ROUND = 2**32
#: The longest life of a ticket an acquire's ``ticket_ms`` may ask for (the caller
#: bounds it), and how long the queue's keys are kept past their last change: longer
#: than any ticket lives, so a ticket never outlives its queue.
QUEUE_TICKET_MAX_MS = MAX_TICKET_SECONDS * 1000
QUEUE_KEYS_TTL_MS = 2 * QUEUE_TICKET_MAX_MS
#: How many grants may pass the head of the queue on keys too small for its request;
#: after that every key it did not exclude is held for it (a large request still goes).
QUEUE_PASSES = 8
#: Per key in a status reply, in this order (``next_fit_us`` -1: never).
STATUS = (
    "key_id",
    "in_pool",
    "rpm_count",
    "tpm_used",
    "rpd_count",
    "tpd_used",
    "cooldown_ms",
    "cooldown_reason",
    "disabled_reason",
    "next_fit_us",
)
#: The limits of a key as registered: these, separated by single spaces (``tier`` only
#: when it is not 0).
LIMITS = ("rpm", "tpm", "rpd", "tpd", "weight", "group", "tier")
#: A learned limit's record in ``learned`` (the source last: it may hold spaces); flag
#: ``r``: the value may exceed the file's, ``-``: it only lowers it.
LEARNED = ("value", "at_us", "expires_us", "flag", "source")
#: The limit kinds a provider's answer may teach (a record's field is ``<kind>:<id>``).
LEARN_KINDS = ("rpm", "tpm", "rpd", "tpd")
#: The record kind that puts a key of no group into the pool's learned group (its value:
#: the group's name, :data:`LEARNED_GROUP`), and that group: the keys a provider's
#: per-project 429s showed to share their quota with others.
LEARNED_GROUP_KIND = "grp"
LEARNED_GROUP = "@~project"
#: A ``replay`` member ``~day<requests>`` (instant: when Redis was read, tokens: the
#: day's tokens) seeds the in-process store with this process's share of a key's (or
#: group's) use earlier today, outside the window, so daily limits hold while Redis is
#: lost. It replaces the seed of that day the store got before (kept in ``dayseed:<id>``),
#: so a replay sent twice adds nothing; a seed read on an earlier day is ignored.
DAY_SEED = "~day"
#: The start of a quota group's name where keys are named (a key id never starts so).
GROUP_MARK = "@"
#: The start of a capped tenant's name in ``use`` and ``rpm:`` (a key id never starts
#: with "~"), followed by the digest of the tenant.
TENANT_MARK = "~t:"
#: The "key id" of a refusal's reason when a tenant's cap refused (never a key's id).
TENANT_REASON = "~tenant"
#: The field of a pool's config that lists its tiers (a key id never starts with "~"):
#: written by ``register``, read by every ``acquire`` of any process.
TIERS_FIELD = "~tiers"

#: What a pool counts per minute, and the code its counter field starts with: requests
#: a key served and its 429s (written by ``settle``, given as its ``outcome``; counted
#: once per reservation), and requests the pool refused (``count``, no key id).
RATES = {"served": "s", "rate_limited": "r", "refused": "x"}
#: The length of one counter bucket, and how long a bucket is kept.
RATE_BUCKET_S = 60
RATE_TTL_S = 660


def pool_base(prefix: str, pool: str) -> str:
    """The common start of every key of ``pool``: ``<prefix>v<N>:{<pool>}:``."""
    return f"{prefix}v{LAYOUT_VERSION}:{{{pool}}}:"


def _locals(prefix: str, names: Sequence[str], start: int = 1, skip: int = 0) -> str:
    """Lua locals ``<PREFIX>_<NAME> = <position>`` of ``names`` but the first ``skip``."""
    pairs = [(f"{prefix}_{n.upper()}", str(i)) for i, n in enumerate(names, start)][skip:]
    if not pairs:
        return ""
    return f"local {', '.join(p for p, _ in pairs)} = {', '.join(v for _, v in pairs)}\n"


def lua_header() -> str:
    """Lua locals naming every position above: ``ACQUIRE_EST``, ``STATUS_WIDTH``, ..."""
    out = [f"-- generated from rotating_llm.limiter._schema (layout v{LAYOUT_VERSION})\n"]
    out.append(_locals("HEAD", HEAD))
    for script, names in ARGS.items():
        # (the HEAD a script starts with is named HEAD_* once: Lua 5.1 allows a chunk
        # 200 locals)
        out.append(_locals(script.upper(), names, skip=len(HEAD)))
    out.append(_locals("GRANT", GRANT))
    out.append(_locals("REFUSAL", REFUSAL))
    out.append(_locals("STATUS", STATUS, 0))  # offsets within one key's entry
    out.append(f"local STATUS_WIDTH, HEAD_LEN = {len(STATUS)}, {len(HEAD)}\n")
    out.append(f"local MAX_PRIORITY, QUEUE_ROUND = {MAX_PRIORITY}, {QUEUE_ROUND}\n")
    # (the queue's functions join this table in the prelude)
    out.append(f"local QU = {{TTL_MS = '{QUEUE_KEYS_TTL_MS}', PASSES = {QUEUE_PASSES}}}\n")
    out.append(f"local GROUP_MARK, TIERS_FIELD = '{GROUP_MARK}', '{TIERS_FIELD}'\n")
    out.append(f"local DAY_SEED = '{DAY_SEED}'\n")
    # (one table: a chunk may hold 200 locals; the prelude adds TENANT.fit, TENANT.take)
    out.append(f"local TENANT = {{MARK = '{TENANT_MARK}', REASON = '{TENANT_REASON}'}}\n")
    out.append(f"local RATE_BUCKET_US, RATE_TTL_S = {RATE_BUCKET_S * 1_000_000}, {RATE_TTL_S}\n")
    kinds = ", ".join(repr(k) for k in LEARN_KINDS)
    out.append(f"local LEARN_KINDS = {{{kinds}}}\n")
    out.append(
        f"local LEARNED_GROUP, LEARNED_GROUP_KIND = '{LEARNED_GROUP}', '{LEARNED_GROUP_KIND}'\n"
    )
    rate_names = ", ".join(f"RATE_{n.upper()}" for n in RATES)
    out.append(f"local {rate_names} = {', '.join(repr(c) for c in RATES.values())}\n")
    return "".join(out)
