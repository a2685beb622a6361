package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// buildMxgate compiles the real mxgate binary (Caddy with mxgate inside) into
// dir. The first build takes minutes; later ones come from the build cache.
func buildMxgate(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "mxgate")
	buildCtx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	// The test runs in e2e/; the module root is its parent.
	if err := runCommand(buildCtx, "..", nil, "go", "build", "-o", bin, "github.com/mxgate/mxgate/cmd/mxgate"); err != nil {
		return "", err
	}
	return bin, nil
}

// gateway is a running mxgate process in front of an upstream.
type gateway struct {
	proc  *process
	url   string // client-facing base URL
	admin string // Caddy admin endpoint base URL (metrics, /mxgate/*)
}

// mxgateEnv keeps Caddy's storage, autosaved config and mxgate's toggle state
// file inside dir rather than the developer's home.
func mxgateEnv(dir string) []string {
	return []string{
		"HOME=" + dir,
		"XDG_DATA_HOME=" + filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
	}
}

// startGatewayDefaults runs `mxgate gateway` with built-in defaults in front of
// upstream.
func startGatewayDefaults(ctx context.Context, bin, dir, upstream string) (*gateway, error) {
	return startGateway(ctx, bin, dir, "mxgate-gateway", func(listen, admin string) ([]string, error) {
		return []string{"gateway", "--upstream", upstream, "--listen", listen, "--admin", admin}, nil
	})
}

// startGateway starts the mxgate process whose arguments command returns for
// a listen and an admin address, and waits until both answer. Should another
// process bind one of its ports first (two test processes choosing the same
// port at once, see package freeport), it starts again on fresh ports, up to
// three times, rather than failing every test that needs the gateway.
func startGateway(ctx context.Context, bin, dir, name string, command func(listen, admin string) ([]string, error)) (*gateway, error) {
	var err error
	for range 3 {
		var addrs, args []string
		if addrs, err = freeLoopbackAddrs(2); err != nil {
			return nil, err
		}
		listen, admin := addrs[0], addrs[1]
		if args, err = command(listen, admin); err != nil {
			return nil, err
		}
		var p *process
		if p, err = startProcess(name, dir, filepath.Join(dir, name+".log"), mxgateEnv(dir), bin, args...); err != nil {
			return nil, err
		}
		var g *gateway
		if g, err = readyGateway(ctx, p, listen, admin); err == nil || !strings.Contains(err.Error(), "address already in use") {
			return g, err
		}
	}
	return nil, err
}

// tightCaddyfile caps room_state and sync_initial far below what a herd of
// hundreds asks for, and detects a herd at 50 users, with short Retry-After
// values (herd ones included) so retries stay quick.
const tightCaddyfile = `{
	admin %s
	persist_config off
	auto_https off
}

http://%s {
	mxgate {
		retry_after 1s 2s
		class room_state {
			max_inflight %d
			queue 16
			queue_timeout 2s
		}
		class sync_initial {
			max_inflight %d
			queue 16
			queue_timeout 2s
		}
		herd {
			window 10s
			min_users 50
			retry_after 1s 3s
		}
	}
	reverse_proxy %s
}
`

// tightCap is max_inflight for the capped classes in tightCaddyfile.
const tightCap = 2

// startGatewayTight runs `mxgate run` with tightCaddyfile in front of
// upstreamHostPort.
func startGatewayTight(ctx context.Context, bin, dir, upstreamHostPort string) (*gateway, error) {
	return startGatewayRun(ctx, bin, dir, "mxgate-tight", func(admin, listen string) string {
		return fmt.Sprintf(tightCaddyfile, admin, listen, tightCap, tightCap, upstreamHostPort)
	})
}

// startGatewayRun runs `mxgate run` with the Caddyfile that caddyfile
// writes for an admin and a listen address.
func startGatewayRun(ctx context.Context, bin, dir, name string, caddyfile func(admin, listen string) string) (*gateway, error) {
	return startGateway(ctx, bin, dir, name, func(listen, admin string) ([]string, error) {
		cfg := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(cfg, []byte(caddyfile(admin, listen)), 0o600); err != nil {
			return nil, err
		}
		return []string{"run", "--config", cfg, "--adapter", "caddyfile"}, nil
	})
}

// unthrottledCaddyfile is mxgate's built-in defaults (coalescing included)
// but without sync_initial's per-user rate limit, so a test can race many
// initial syncs of one user instead of having most of them refused.
const unthrottledCaddyfile = `{
	admin %s
	persist_config off
	auto_https off
}

http://%s {
	mxgate {
		class sync_initial {
			rate 1000 1000
		}
	}
	reverse_proxy %s
}
`

// startGatewayUnthrottled runs `mxgate run` with unthrottledCaddyfile in
// front of upstreamHostPort.
func startGatewayUnthrottled(ctx context.Context, bin, dir, upstreamHostPort string) (*gateway, error) {
	return startGatewayRun(ctx, bin, dir, "mxgate-unthrottled", func(admin, listen string) string {
		return fmt.Sprintf(unthrottledCaddyfile, admin, listen, upstreamHostPort)
	})
}

// readyGateway waits until both the proxied client API and the admin
// endpoint answer.
func readyGateway(ctx context.Context, p *process, listen, admin string) (*gateway, error) {
	g := &gateway{proc: p, url: "http://" + listen, admin: "http://" + admin}
	readyCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, u := range []string{g.url + "/_matrix/client/versions", g.admin + "/metrics"} {
		if err := waitHTTP(readyCtx, p, u); err != nil {
			p.stop(5 * time.Second)
			return nil, err
		}
	}
	return g, nil
}
