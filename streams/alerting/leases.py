"""Atomic Redis steps of the alerting stage: leases (claims, locks) and compare-and-set.

Each is one Lua script (redis-py `register_script`: EVALSHA, loaded on first use), so no
other client's command can run between its check and its write. A check-then-write done
as two commands lets a worker whose lease just ran out delete the lease the next worker
took, or a zombie worker (still running after a rebalance moved its partitions) overwrite
state that the partition's new owner saved since the zombie read it.
"""

from __future__ import annotations

from typing import Any

#: Take the lease if free, extend it if ours; 0 when another holder has it.
_HOLD = """
local owner = redis.call('GET', KEYS[1])
if owner == false then
  return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) and 1 or 0
elseif owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

#: Delete the lease only if it is still ours (it may have run out and passed to another).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: KEYS[i]: a hash; ARGV[1]: TTL (s; 0 keeps each key's TTL); then per key: field,
#: expected ('0' = absent, '1' .. value = that value), new value. Writes every field only
#: if every field still holds what was expected; 1 when written, 0 when any changed.
_SET_IF_UNCHANGED = """
for i = 1, #KEYS do
  local j = 2 + (i - 1) * 3
  local current = redis.call('HGET', KEYS[i], ARGV[j])
  local expected = ARGV[j + 1]
  if expected == '0' then
    if current ~= false then return 0 end
  elseif current == false or '1' .. current ~= expected then
    return 0
  end
end
for i = 1, #KEYS do
  local j = 2 + (i - 1) * 3
  redis.call('HSET', KEYS[i], ARGV[j], ARGV[j + 2])
  if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[i], ARGV[1]) end
end
return 1
"""


class Leases:
    """Token-owned leases on keys: one holder at a time, released only by its holder."""

    def __init__(self, redis: Any) -> None:
        self._hold = redis.register_script(_HOLD)
        self._release = redis.register_script(_RELEASE)

    async def hold(self, key: str, token: str, lease_ms: int) -> bool:
        """Take or extend the lease for `lease_ms`; False while another token holds it."""
        return bool(await self._hold(keys=[key], args=[token, lease_ms]))

    async def release(self, key: str, token: str) -> bool:
        """Delete the lease if `token` still holds it; True when it did."""
        return bool(await self._release(keys=[key], args=[token]))


class HashFields:
    """Compare-and-set over fields of several hashes at once (optimistic concurrency)."""

    def __init__(self, redis: Any) -> None:
        self._set = redis.register_script(_SET_IF_UNCHANGED)

    async def set_if_unchanged(
        self, writes: dict[tuple[str, str], tuple[str | None, str]], ttl_s: int
    ) -> bool:
        """`{(key, field): (expected, new)}`: write every `new` (and refresh the keys'
        TTL to `ttl_s`; 0 keeps it) only if every field still holds its `expected` (None =
        absent)."""
        if not writes:
            return True
        keys, args = [], [ttl_s]
        for (key, field), (expected, new) in writes.items():
            keys.append(key)
            args += [field, "0" if expected is None else "1" + expected, new]
        return bool(await self._set(keys=keys, args=args))
