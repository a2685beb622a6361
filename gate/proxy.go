package gate

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
)

// Proxy serves the gate in front of rp, for plain net/http deployments. It
// is Middleware(rp) with one difference: a failed upstream round trip is
// returned to the gate instead of being answered with a 502 on the spot, so
// that ride-through can hold and retry the request while the homeserver
// restarts. Proxy takes over rp.ErrorHandler; a request that finally fails
// is answered with 502.
func (g *Gate) Proxy(rp *httputil.ReverseProxy) http.Handler {
	rp.ErrorHandler = func(_ http.ResponseWriter, r *http.Request, err error) {
		if slot, ok := r.Context().Value(proxyErrKey{}).(*error); ok {
			*slot = err
		}
	}
	next := func(w http.ResponseWriter, r *http.Request) error {
		var err error
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), proxyErrKey{}, &err)))
		return err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := g.ServeNext(w, r, next)
		var rej *Rejection
		switch {
		case errors.As(err, &rej):
			rej.Write(w)
		case err != nil && r.Context().Err() == nil:
			g.writeUpstreamFailed(w)
		}
	})
}

// proxyErrKey carries a request's round-trip error from rp's ErrorHandler
// back to Proxy's next.
type proxyErrKey struct{}
