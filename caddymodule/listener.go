package caddymodule

import (
	"net"
	"strconv"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

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
// The cap is fair between clients (limiter.ConnLimit): one client address
// (an IPv6 /64) holds at most client_share of it — a connection beyond that
// is closed as soon as it is accepted — and at the cap, idle keep-alive
// connections (idle for a second or more, as the HTTP server reports) are
// closed before new clients are made to wait. Behind a proxy or load
// balancer every connection has the proxy's address: put proxy_protocol
// first, or set client_share 1.
//
//	mxgate_conns 4096 {
//		client_share 0.25
//	}
type ConnsListener struct {
	// MaxConns is the cap; 0 derives it from RLIMIT_NOFILE (see
	// limiter.BudgetFromFDLimit). With several configured caps, the one
	// provisioned last applies.
	MaxConns int `json:"max_conns,omitempty"`
	// ClientShare is the largest share of the cap one client address (IPv6:
	// /64) may hold, in (0, 1]; 1 turns the per-client limit off. Default
	// 0.5. Like MaxConns, the last provisioned applies.
	ClientShare float64 `json:"client_share,omitempty"`

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
	share := l.ClientShare
	if share == 0 {
		share = limiter.DefaultClientShare
	}
	clientConns.SetClientShare(share)
	clientConnsBudget = l.budget
	// The server this wrapper belongs to reports which connections are idle
	// keep-alives, the first to close under pressure.
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		srv.RegisterConnState(clientConns.ConnState)
	}
	return nil
}

// WrapListener implements caddy.ListenerWrapper.
func (l *ConnsListener) WrapListener(ln net.Listener) net.Listener {
	clientConnsMu.Lock()
	defer clientConnsMu.Unlock()
	return clientConns.Wrap(ln)
}

// UnmarshalCaddyfile parses `mxgate_conns [N] [{ client_share S }]`.
func (l *ConnsListener) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the wrapper name
	if d.NextArg() {
		n, err := strconv.Atoi(d.Val())
		if err != nil || n < 1 {
			return d.Errf("mxgate_conns: want a positive number of connections, got %q", d.Val())
		}
		l.MaxConns = n
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "client_share":
			if !d.NextArg() {
				return d.ArgErr()
			}
			f, err := strconv.ParseFloat(d.Val(), 64)
			if err != nil || !(f > 0 && f <= 1) {
				return d.Errf("mxgate_conns: client_share wants a share in (0, 1], got %q", d.Val())
			}
			if l.ClientShare != 0 {
				return d.Err("mxgate_conns: client_share given twice")
			}
			l.ClientShare = f
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("mxgate_conns: unknown subdirective %q", d.Val())
		}
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
