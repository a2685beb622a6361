package gate

import "net/http"

// isPreflight reports whether r is a CORS preflight as the Fetch standard
// defines one: OPTIONS with both Origin and Access-Control-Request-Method.
// A bare OPTIONS is an ordinary request and goes through the pipeline.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// servePreflight passes a CORS preflight straight to next: it is never
// classified, shed, rate limited, queued or counted in a class. A refused
// preflight blocks the real request behind it, whatever that request's
// class (a brownout would otherwise block the critical /sync and /send of
// every browser client), and a homeserver answers one without touching its
// database.
//
// While ride-through holds requests because the upstream is down, or when
// next gets no answer from it at all, mxgate answers the preflight itself:
// 204 with its CORS headers, so that the browser sends the real request,
// which then waits in its queue or gets a 429 it can read. With CORS off,
// mxgate has nothing to answer with and next's result stands.
func (g *Gate) servePreflight(w http.ResponseWriter, r *http.Request, cfg *Config, next Next) error {
	if !cfg.CORS.Enabled {
		return next(w, r)
	}
	if g.adm.Down() {
		writePreflight(w, &cfg.CORS)
		return nil
	}
	sw := &statusWriter{ResponseWriter: w}
	err := next(sw, r)
	if err != nil && sw.status == 0 && r.Context().Err() == nil {
		writePreflight(w, &cfg.CORS)
		return nil
	}
	return err
}

// writePreflight answers a preflight: 204 No Content with c's headers.
func writePreflight(w http.ResponseWriter, c *CORSConfig) {
	c.SetHeaders(w.Header())
	w.WriteHeader(http.StatusNoContent)
}
