// Package limiter holds mxgate's admission algorithms: in-flight caps with
// bounded deadline queues (Admission), per-user token buckets (Rates), and
// operator shed toggles with expiry (Toggles). It imports nothing from Caddy
// and nothing Matrix-specific: classes are small integer indexes chosen by
// the caller.
//
// Every wait is bounded (a queue deadline or the caller's context), every
// queue and map has a cap, and every time-dependent call takes the current
// time from the caller or an injectable clock, so tests need no sleeping.
package limiter
