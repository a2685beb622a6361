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
// restarts. Proxy takes over rp.ErrorHandler and wraps rp.Transport; a
// request that finally fails is answered with 502 (504 for a timeout).
func (g *Gate) Proxy(rp *httputil.ReverseProxy) http.Handler {
	rt := rp.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	rp.Transport = classifyingTransport{rt}
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
			g.writeUpstreamFailed(w, statusOf(err))
		}
	})
}

// proxyErrKey carries a request's round-trip error from rp's ErrorHandler
// back to Proxy's next.
type proxyErrKey struct{}

// classifyingTransport gives the errors of its round trips the status
// Caddy's reverse proxy gives them, so that the gate judges the upstream
// alike behind either (failure.go reads the status). Errors the reverse
// proxy raises itself before any round trip (a client's malformed Upgrade
// header) pass it by and carry none: they are not the upstream's.
type classifyingTransport struct{ http.RoundTripper }

func (t classifyingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := t.RoundTripper.RoundTrip(r)
	if err != nil {
		return nil, classifyRoundTrip(err)
	}
	return res, nil
}

// roundTripError is a failed round trip with its status; unreachable also
// makes it ErrUpstreamUnreachable (the dial failed: nothing was sent).
type roundTripError struct {
	status      int
	err         error
	unreachable bool
}

func (e roundTripError) Error() string   { return e.err.Error() }
func (e roundTripError) StatusCode() int { return e.status }
func (e roundTripError) Unwrap() []error {
	if e.unreachable {
		return []error{e.err, ErrUpstreamUnreachable}
	}
	return []error{e.err}
}

// classifyRoundTrip classifies err as Caddy's reverse proxy does: a request
// its client cancelled is 499, a failed dial 502 and unreachable (Caddy's
// DialError, whatever the cause, a dial timeout included), another timeout
// 504, anything else (a reset, a connection closed before the answer) 502.
func classifyRoundTrip(err error) error {
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return roundTripError{status: StatusClientClosed, err: err}
	case errors.As(err, &op) && op.Op == "dial":
		return roundTripError{status: http.StatusBadGateway, err: err, unreachable: true}
	case errors.As(err, &ne) && ne.Timeout():
		return roundTripError{status: http.StatusGatewayTimeout, err: err}
	}
	return roundTripError{status: http.StatusBadGateway, err: err}
}
