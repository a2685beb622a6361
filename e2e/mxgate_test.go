package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	addrs, err := freeLoopbackAddrs(2)
	if err != nil {
		return nil, err
	}
	listen, admin := addrs[0], addrs[1]
	p, err := startProcess("mxgate-gateway", dir, filepath.Join(dir, "mxgate-gateway.log"), mxgateEnv(dir),
		bin, "gateway", "--upstream", upstream, "--listen", listen, "--admin", admin)
	if err != nil {
		return nil, err
	}
	return readyGateway(ctx, p, listen, admin)
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
	addrs, err := freeLoopbackAddrs(2)
	if err != nil {
		return nil, err
	}
	listen, admin := addrs[0], addrs[1]
	cfg := filepath.Join(dir, "Caddyfile")
	body := fmt.Sprintf(tightCaddyfile, admin, listen, tightCap, tightCap, upstreamHostPort)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		return nil, err
	}
	p, err := startProcess("mxgate-tight", dir, filepath.Join(dir, "mxgate-tight.log"), mxgateEnv(dir),
		bin, "run", "--config", cfg, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	return readyGateway(ctx, p, listen, admin)
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
	addrs, err := freeLoopbackAddrs(2)
	if err != nil {
		return nil, err
	}
	listen, admin := addrs[0], addrs[1]
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(unthrottledCaddyfile, admin, listen, upstreamHostPort)), 0o600); err != nil {
		return nil, err
	}
	p, err := startProcess("mxgate-unthrottled", dir, filepath.Join(dir, "mxgate-unthrottled.log"), mxgateEnv(dir),
		bin, "run", "--config", cfg, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	return readyGateway(ctx, p, listen, admin)
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
