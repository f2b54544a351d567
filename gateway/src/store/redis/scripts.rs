//! The Lua scripts of the Redis store. Each runs on one node, so on a cluster every key a
//! script names (KEYS) shares one slot: `keys.rs` gives those keys one hash tag.

/// Deletes the lock only if the caller still owns it.
pub(super) const UNLOCK_SCRIPT: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"#;

/// Adds a session to a user's sorted set (score: its expiry, unix ms), names the user in the
/// list of users that holds it (`Keys::users_of`, for listing), drops the entries that expired, and lets the
/// user's set expire with its last session.
pub(super) const ADD_USER_SESSION_SCRIPT: &str = r#"
redis.call("ZADD", KEYS[1], ARGV[2], ARGV[1])
redis.call("ZADD", KEYS[2], 0, ARGV[4])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", ARGV[3])
local last = redis.call("ZRANGE", KEYS[1], -1, -1, "WITHSCORES")
if last[2] then
  redis.call("PEXPIREAT", KEYS[1], last[2])
end
return 1
"#;

/// Removes a user from their list of users if none of their sessions is live (atomic against a login
/// adding one).
pub(super) const FORGET_USER_SCRIPT: &str = r#"
if redis.call("ZCOUNT", KEYS[2], "(" .. ARGV[2], "+inf") == 0 then
  return redis.call("ZREM", KEYS[1], ARGV[1])
end
return 0
"#;

/// Keeps the longer of the stored and the new cool-down under KEYS[1], then publishes the
/// notice on ARGV[3] either way (a replica only ever lengthens its own).
pub(super) const COOL_DOWN_SCRIPT: &str = r#"
if redis.call("PTTL", KEYS[1]) < tonumber(ARGV[1]) then
  redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[1])
end
return redis.call("PUBLISH", ARGV[3], ARGV[4])
"#;

/// The shared budget's window: every call in KEYS[1], app-token calls also in KEYS[2]
/// (sorted sets of call times on Redis's clock). Drops calls older than ARGV[1] ms, then adds
/// this one (member ARGV[3]) if fewer than ARGV[2] calls remain and, for an app-token call
/// (ARGV[4] > 0), fewer than ARGV[4] app-token calls; returns 0 when taken, else the ms until
/// there is room (the oldest call in the way leaves the window; with both counts full, the
/// later of the two).
pub(super) const BUDGET_SCRIPT: &str = r#"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local app_limit = tonumber(ARGV[4])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now - window)
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", now - window)
local function until_room(key)
  local oldest = redis.call("ZRANGE", key, 0, 0, "WITHSCORES")
  return math.max(1, tonumber(oldest[2]) + window - now)
end
local wait = 0
if redis.call("ZCARD", KEYS[1]) >= tonumber(ARGV[2]) then
  wait = until_room(KEYS[1])
end
if app_limit > 0 and redis.call("ZCARD", KEYS[2]) >= app_limit then
  wait = math.max(wait, until_room(KEYS[2]))
end
if wait == 0 then
  local member = now .. ":" .. ARGV[3]
  redis.call("ZADD", KEYS[1], now, member)
  redis.call("PEXPIRE", KEYS[1], window)
  if app_limit > 0 then
    redis.call("ZADD", KEYS[2], now, member)
    redis.call("PEXPIRE", KEYS[2], window)
  end
  return 0
end
return wait
"#;
/// Adds calls made while the shared window could not be reached: ARGV[1] the window (ms),
/// ARGV[2] how many of the ages that follow (from ARGV[4]) are of every call (KEYS[1]); the
/// rest are the app-token calls among them (KEYS[2]). Each is placed at its age before Redis's
/// now, under a member unique to this call (ARGV[3]); then both sets expire with the window.
pub(super) const ADD_CALLS_SCRIPT: &str = r#"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local n_all = tonumber(ARGV[2])
for i = 4, #ARGV do
  local age = tonumber(ARGV[i])
  if age < window then
    local at = now - age
    local key = KEYS[1]
    if i - 3 > n_all then
      key = KEYS[2]
    end
    redis.call("ZADD", key, at, at .. ":" .. ARGV[3] .. ":" .. i)
  end
end
redis.call("PEXPIRE", KEYS[1], window)
redis.call("PEXPIRE", KEYS[2], window)
return 1
"#;
