// Package fleet keeps the state that several mxgate gateways in front of one
// homeserver must share in Redis (or Valkey), so that a fleet of gateways
// holds one set of limits instead of one per gateway:
//
//   - operator toggles (Toggles, a limiter.ToggleStore): Redis holds the
//     fleet's set; every gateway mirrors it into its own store (and state
//     file), learns of changes by pub/sub and resyncs periodically;
//   - per-user rates (Rates, a limiter.RateStore): GCRA in one Lua call,
//     keyed by the class and the hashed credential (never a token);
//   - herd counts (DistinctUsers): distinct users per (class, room) over the
//     fleet, in HyperLogLogs per window bucket;
//   - cap shares (Share): gateways register with a TTL heartbeat and each
//     takes cap ÷ live gateways of every in-flight cap.
//
// Redis going away never fails a request: every call has a short deadline,
// and after a failure the per-request paths stop calling Redis until the
// next heartbeat succeeds (a breaker), using local fallbacks meanwhile: the
// local toggle copy, a local token bucket at rate ÷ N, the local herd count,
// and the last cap share (fail-static). Fallbacks are counted in Metrics.
//
// Time is passed in by callers. Timestamps written to Redis come from each
// gateway's clock, so the gateways' clocks must agree to well within a
// heartbeat TTL and a rate's emission interval (NTP does).
//
// Every key lives under "mxgate:{<zone>}:"; the braces are a cluster hash
// tag, so one zone's keys share a slot. Only commands common to Redis and
// Valkey are used.
package fleet
