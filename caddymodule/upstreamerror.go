package caddymodule

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/mxgate/mxgate/gate"
)

// upstreamError carries an error of the rest of Caddy's chain to the gate
// in the terms the gate understands without importing Caddy: the status of
// a caddyhttp.HandlerError (a struct field there) as a StatusCode method,
// and a reverse proxy dial failure (DialError does not unwrap to its cause)
// as gate.ErrUpstreamUnreachable. ServeHTTP hands Caddy the original error.
type upstreamError struct {
	orig   error
	status int
	cause  error // gate.ErrUpstreamUnreachable or nil
}

func (e *upstreamError) Error() string   { return e.orig.Error() }
func (e *upstreamError) StatusCode() int { return e.status }
func (e *upstreamError) Unwrap() []error { return []error{e.orig, e.cause} }

// gateNext adapts Caddy's next handler to gate.Next.
func gateNext(next caddyhttp.Handler) gate.Next {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := next.ServeHTTP(w, r)
		if err == nil {
			return nil // before errors.As, whose target would escape on every request
		}
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) {
			return err
		}
		ue := &upstreamError{orig: err, status: he.StatusCode}
		var de reverseproxy.DialError
		if errors.As(err, &de) {
			ue.cause = gate.ErrUpstreamUnreachable
		}
		return ue
	}
}

// callerError undoes gateNext's wrapping for Caddy's error handling, and
// gives an error of the gate's own that carries a status (an upstream
// timeout's 504) that status, which Caddy would otherwise answer 500.
func callerError(err error) error {
	var ue *upstreamError
	if errors.As(err, &ue) {
		return ue.orig
	}
	var sc interface{ StatusCode() int }
	if errors.As(err, &sc) {
		return caddyhttp.Error(sc.StatusCode(), err)
	}
	return err
}
