package gate

import "net/http"

// CORSConfig is what the answers mxgate writes itself (its 429s, its own
// 502s, preflights it answers while the homeserver is down) tell a browser.
// Element Web runs on another origin than its homeserver: to the browser, an
// answer without Access-Control-Allow-Origin is a network error, so the
// client sees no status, no errcode and no Retry-After, and matrix-js-sdk's
// scheduler gives up on a message at once instead of retrying it. Answers the
// homeserver wrote pass through untouched: it sets its own CORS headers.
type CORSConfig struct {
	// Enabled sets the headers below; off, mxgate's answers carry none and
	// preflights always go to the homeserver (they are never shed either way).
	Enabled bool
	// The header values; an empty one is not sent.
	AllowOrigin, AllowMethods, AllowHeaders, ExposeHeaders string
}

// The values Synapse sends on every answer (synapse/http/server.py
// set_cors_headers, which the spec's "Web browser clients" section
// follows), except Access-Control-Expose-Headers: a browser shows a script
// only the headers listed there, and Retry-After is the one mxgate's 429
// needs read (mautrix-go, matrix-rust-sdk and matrix-js-sdk read it).
const (
	DefaultCORSAllowOrigin   = "*"
	DefaultCORSAllowMethods  = "GET, HEAD, POST, PUT, DELETE, OPTIONS"
	DefaultCORSAllowHeaders  = "X-Requested-With, Content-Type, Authorization, Date"
	DefaultCORSExposeHeaders = "Retry-After"
)

// DefaultCORS is CORS on, with the homeserver's values.
func DefaultCORS() CORSConfig {
	return CORSConfig{Enabled: true, AllowOrigin: DefaultCORSAllowOrigin, AllowMethods: DefaultCORSAllowMethods,
		AllowHeaders: DefaultCORSAllowHeaders, ExposeHeaders: DefaultCORSExposeHeaders}
}

// SetHeaders sets c's headers on h, replacing any already there, so an
// answer never carries one twice. It does nothing when c is off (or nil).
func (c *CORSConfig) SetHeaders(h http.Header) {
	if c == nil || !c.Enabled {
		return
	}
	for _, kv := range [...]struct{ k, v string }{
		{"Access-Control-Allow-Origin", c.AllowOrigin},
		{"Access-Control-Allow-Methods", c.AllowMethods},
		{"Access-Control-Allow-Headers", c.AllowHeaders},
		{"Access-Control-Expose-Headers", c.ExposeHeaders},
	} {
		if kv.v != "" {
			h.Set(kv.k, kv.v)
		}
	}
}

// SetCORSHeaders sets the configured CORS headers on h, for answers that
// the glue around the gate writes itself (a 502 when the upstream fails).
func (g *Gate) SetCORSHeaders(h http.Header) {
	g.cfg.Load().CORS.SetHeaders(h)
}

// writeUpstreamFailed answers a request whose upstream round trip failed
// with nothing written: mxgate's own 502, or 504 if status says the
// upstream timed out, with CORS headers.
func (g *Gate) writeUpstreamFailed(w http.ResponseWriter, status int) {
	g.SetCORSHeaders(w.Header())
	if status == http.StatusGatewayTimeout {
		http.Error(w, "upstream timed out", status)
		return
	}
	http.Error(w, "upstream failed", http.StatusBadGateway)
}
