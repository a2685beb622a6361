// Package limiter holds mxgate's admission algorithms, none of which knows
// Matrix or Caddy: classes are small integer indexes chosen by the caller.
//
//   - Admission: in-flight caps per class and over all classes, with
//     bounded deadline queues. Acquire hands out a Ticket; its Done frees
//     the slot and feeds the class's adaptive limit (Gradient) and the
//     upstream's liveness, so the cap in force is computed here, from the
//     configured cap, the adaptive limit and slow start. Admit admits at
//     once over the caps (the caller's shadow mode).
//   - Liveness: the upstream's down/up state machine — evidence, probe
//     decisions, slow start — driven by the caller's clock.
//   - Gradient: the adaptive concurrency limit; SlowStart: the ramp after
//     an outage; ErrorRate and Tripwire: the 5xx window behind error
//     shedding.
//   - Rates: per-user token buckets; Toggles: operator shed toggles with
//     expiry, in memory or in a state file; ConnLimit: the listener's
//     connection cap.
//
// Every wait is bounded (a queue deadline or the caller's context), every
// queue and map has a cap, and every time-dependent decision takes the
// current time from the caller or an injectable clock, so tests run in
// virtual time. The one timer of its own is a queue's deadline in Acquire.
package limiter
