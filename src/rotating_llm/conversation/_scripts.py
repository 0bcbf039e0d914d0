"""The conversation store's Lua scripts and the checks on what reaches them.

Every write is one script, so each decision is taken inside Redis from what Redis holds,
never from a process's earlier read: whether a conversation is new (its system message
is stored once), and whether a turn was already stored (its idempotency key was seen).
"""

from __future__ import annotations

from rotating_llm.conversation._messages import ConversationError

__all__ = [
    "APPEND",
    "MAX_ID",
    "TRUNCATE",
    "TURN_IDS_KEPT",
    "check_count",
    "check_id",
    "check_idempotency_key",
]

MAX_ID = 256
#: Idempotency keys remembered per conversation (the newest; a retry comes much sooner).
TURN_IDS_KEPT = 1000

_PRELUDE = """
local t = redis.call('TIME')
local now = string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
"""

# KEYS: messages, meta, turn ids (zset: idempotency key -> Redis time it was stored).
# ARGV: ttl, tokens, model, key_id, idempotency key, system message ('' for none),
# message... Returns {length, 1 if stored / 0 if the key was seen before}.
APPEND = (
    _PRELUDE
    + f"""
local ttl = tonumber(ARGV[1])
local turn_id = ARGV[5]
if redis.call('ZSCORE', KEYS[3], turn_id) then
  return {{redis.call('LLEN', KEYS[1]), 0}}
end
if ARGV[6] ~= '' and redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('RPUSH', KEYS[1], ARGV[6])
end
for i = 7, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
local len = redis.call('LLEN', KEYS[1])
redis.call('ZADD', KEYS[3], now, turn_id)
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -{TURN_IDS_KEPT + 1})
redis.call('HSETNX', KEYS[2], 'created_at', now)
redis.call('HSET', KEYS[2], 'updated_at', now, 'message_count', len)
redis.call('HINCRBY', KEYS[2], 'total_tokens', tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[2], 'turn_count', 1)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'last_model', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'last_key_id', ARGV[4]) end
if len > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
return {{len, 1}}
"""
)

# KEYS: messages, meta, turn ids. ARGV: ttl, keep_last_n. Returns the messages removed.
TRUNCATE = (
    _PRELUDE
    + """
local ttl = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local before = redis.call('LLEN', KEYS[1])
if before == 0 and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if keep == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('LTRIM', KEYS[1], -keep, -1)
end
local len = redis.call('LLEN', KEYS[1])
redis.call('HSET', KEYS[2], 'updated_at', now, 'message_count', len)
if len > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
redis.call('EXPIRE', KEYS[2], ttl)
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ttl) end
return before - len
"""
)


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConversationError(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > MAX_ID:
        raise ConversationError(f"{name} must be at most {MAX_ID} characters")
    if any(ord(c) < 32 for c in value):
        raise ConversationError(f"{name} {value!r} must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConversationError(f"{name} {value!r} is not valid Unicode text") from None
    return value


def check_id(conv_id: object) -> str:
    """``conv_id`` if it is a usable conversation id, else ``ConversationError``."""
    if isinstance(conv_id, str) and ("{" in conv_id or "}" in conv_id):
        raise ConversationError(
            f"conv_id {conv_id!r} must not contain '{{' or '}}' (used as the hash tag)"
        )
    return _check_text("conv_id", conv_id)


def check_idempotency_key(key: object) -> str:
    """``key`` if it is a usable idempotency key (1-256 characters, no control characters)."""
    return _check_text("idempotency_key", key)


def check_count(name: str, value: object) -> int:
    """``value`` if it is an integer >= 0, else ``ConversationError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConversationError(f"{name} must be an integer >= 0, got {value!r}")
    return value
