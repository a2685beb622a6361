package caddymodule

import (
	"net"
	"strconv"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mxgate/mxgate/limiter"
)

func init() {
	caddy.RegisterModule(ConnsListener{})
}

// ConnsListener is the listener wrapper caddy.listeners.mxgate_conns: it
// caps the client connections the process holds open, so that a flood of
// clients cannot exhaust its file descriptors. At the cap it stops
// accepting — the rest wait in the kernel's listen backlog, and beyond the
// backlog the kernel refuses them — instead of accepting and failing.
//
// The cap is one budget for the whole process, shared by every listener it
// wraps and kept across config reloads (connections from before a reload
// still count). Place it before the TLS wrapper so that connections in a
// TLS handshake count too:
//
//	{
//		servers {
//			listener_wrappers {
//				mxgate_conns 4096
//				tls
//			}
//		}
//	}
//
// Note that idle keep-alive connections hold their slot until the server's
// idle_timeout closes them.
type ConnsListener struct {
	// MaxConns is the cap; 0 derives it from RLIMIT_NOFILE (see
	// limiter.BudgetFromFDLimit). With several configured caps, the one
	// provisioned last applies.
	MaxConns int `json:"max_conns,omitempty"`

	budget limiter.FDBudget
}

var (
	// clientConnsMu guards the process-wide cap, built by the first
	// mxgate_conns provisioned.
	clientConnsMu     sync.Mutex
	clientConns       *limiter.ConnLimit
	clientConnsBudget limiter.FDBudget
)

// CaddyModule returns the Caddy module information.
func (ConnsListener) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.mxgate_conns",
		New: func() caddy.Module { return new(ConnsListener) },
	}
}

// fallbackFDLimit stands in where RLIMIT_NOFILE cannot be read.
const fallbackFDLimit = 1024

// Provision computes the cap and applies it to the process-wide limit.
func (l *ConnsListener) Provision(ctx caddy.Context) error {
	soft, ok := limiter.FDLimit()
	if !ok {
		soft = fallbackFDLimit
	}
	l.budget = limiter.BudgetFromFDLimit(soft)
	if l.MaxConns > 0 {
		l.budget.Clients = l.MaxConns
	}
	ctx.Slogger().Info("mxgate client connection cap",
		"max_conns", l.budget.Clients,
		"from_rlimit", l.MaxConns == 0,
		"rlimit_nofile", soft,
		"fd_reserve", l.budget.Reserve,
		"upstream_share", l.budget.Upstream)
	clientConnsMu.Lock()
	defer clientConnsMu.Unlock()
	if clientConns == nil {
		clientConns = limiter.NewConnLimit(l.budget.Clients)
	} else {
		clientConns.SetMax(l.budget.Clients)
	}
	clientConnsBudget = l.budget
	return nil
}

// WrapListener implements caddy.ListenerWrapper.
func (l *ConnsListener) WrapListener(ln net.Listener) net.Listener {
	clientConnsMu.Lock()
	defer clientConnsMu.Unlock()
	return clientConns.Wrap(ln)
}

// UnmarshalCaddyfile parses `mxgate_conns [N]`.
func (l *ConnsListener) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the wrapper name
	if d.NextArg() {
		n, err := strconv.Atoi(d.Val())
		if err != nil || n < 1 {
			return d.Errf("mxgate_conns: want a positive number of connections, got %q", d.Val())
		}
		l.MaxConns = n
	}
	if d.NextArg() || d.NextBlock(0) {
		return d.ArgErr()
	}
	return nil
}

// connectionStatus is the process-wide cap's state, nil if no listener has
// used mxgate_conns since the process started.
func connectionStatus() *ConnectionStatus {
	clientConnsMu.Lock()
	defer clientConnsMu.Unlock()
	if clientConns == nil {
		return nil
	}
	return &ConnectionStatus{ConnStats: clientConns.Stats(), Budget: clientConnsBudget}
}

// Interface guards
var (
	_ caddy.Provisioner     = (*ConnsListener)(nil)
	_ caddy.ListenerWrapper = (*ConnsListener)(nil)
	_ caddyfile.Unmarshaler = (*ConnsListener)(nil)
)
