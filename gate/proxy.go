package gate

import (
	"context"
	"errors"
	"net"
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
			*slot = roundTripError(err)
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

// proxyError is a failed round trip with the status Caddy's reverse proxy
// gives it, so that the gate judges the upstream alike behind either: the
// failure model (failure.go) reads the status.
type proxyError struct {
	status int
	err    error
}

func (e proxyError) Error() string   { return e.err.Error() }
func (e proxyError) Unwrap() error   { return e.err }
func (e proxyError) StatusCode() int { return e.status }

// roundTripError classifies err as Caddy's reverse proxy does: a timeout is
// 504, a request its client cancelled 499, anything else (a reset, a
// connection closed before the answer) 502.
func roundTripError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return proxyError{StatusClientClosed, err}
	case errors.As(err, &ne) && ne.Timeout():
		return proxyError{http.StatusGatewayTimeout, err}
	}
	return proxyError{http.StatusBadGateway, err}
}
