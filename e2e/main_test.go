// Package e2e runs mxgate, built as the real binary, in front of real
// homeservers (Dendrite and Synapse) and drives them with mautrix-go clients.
// Every test runs once per homeserver, as a subtest named after it;
// MXGATE_E2E_HOMESERVERS (e.g. "synapse") picks a subset. The package
// provisions the homeservers itself (dendrite_test.go, synapseroot_test.go)
// and is skipped under -short.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// suite is the shared environment every test in the package runs against.
type suite struct {
	bin         string // the mxgate binary
	tmp         string // the run's scratch folder
	homeservers []*hsEnv
}

var env suite

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped under -short (needs Dendrite, Synapse and a full mxgate build)")
		os.Exit(0)
	}
	os.Exit(runSuite(m))
}

// runSuite provisions and starts every selected homeserver and its
// gateways, runs the tests, and stops every process before returning,
// whatever happened. Provisioning steps run in parallel.
func runSuite(m *testing.M) int {
	ctx := context.Background()
	names, err := selectedHomeservers()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if env.tmp, err = os.MkdirTemp("", "mxgate-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(env.tmp)

	var wg sync.WaitGroup
	var buildErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		done := step("building mxgate")
		env.bin, buildErr = buildMxgate(ctx, env.tmp)
		done(buildErr)
	}()
	for _, name := range names {
		s := &hsEnv{name: name}
		env.homeservers = append(env.homeservers, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.hs, s.setupErr = startHomeserver(ctx, name, mkdir(env.tmp, name))
		}()
	}
	wg.Wait()
	defer func() {
		for _, s := range env.homeservers {
			s.stopAll()
		}
	}()
	for _, s := range env.homeservers {
		switch {
		case s.setupErr != nil:
			fmt.Fprintf(os.Stderr, "e2e: %s: %v\n", s.name, s.setupErr)
		case buildErr != nil:
			s.setupErr = fmt.Errorf("building mxgate: %w", buildErr)
		default:
			s.setupErr = s.startGateways(ctx, mkdir(env.tmp, s.name+"-gateways"))
		}
	}

	code := m.Run()
	if code != 0 {
		for _, s := range env.homeservers {
			for _, p := range s.processes() {
				fmt.Fprintf(os.Stderr, "\n===== %s: %s log tail (%s) =====\n%s\n", s.name, p.name, p.logPath, p.logTail(60))
			}
		}
	}
	return code
}

// startHomeserver provisions (when needed) and starts the named homeserver
// with its data in dir.
func startHomeserver(ctx context.Context, name, dir string) (homeserver, error) {
	switch name {
	case "dendrite":
		binDir, err := dendriteBinDir()
		if err == nil {
			err = provisionDendrite(ctx, binDir)
		}
		if err != nil {
			return nil, fmt.Errorf("provisioning Dendrite: %w", err)
		}
		done := step("starting Dendrite")
		d, err := startDendrite(ctx, binDir, dir)
		done(err)
		if err != nil {
			return nil, err
		}
		return d, nil
	case "synapse":
		cache, err := synapseCacheDir()
		if err != nil {
			return nil, err
		}
		root, version, err := provisionSynapseRoot(ctx, cache)
		if err != nil {
			return nil, fmt.Errorf("provisioning Synapse: %w", err)
		}
		done := step("starting Synapse %s (fresh SQLite database, background updates)", version)
		s, err := startSynapse(ctx, root, version, dir)
		done(err)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown homeserver %q", name)
}

// startGateways starts the default and the tight gateway in front of s.hs.
func (s *hsEnv) startGateways(ctx context.Context, dir string) error {
	var err error
	if s.gateway, err = startGatewayDefaults(ctx, env.bin, mkdir(dir, "gateway"), s.hs.url()); err != nil {
		return fmt.Errorf("starting mxgate gateway: %w", err)
	}
	if s.probe, err = newUpstreamProbe(s.hs.url()); err != nil {
		return err
	}
	if s.tight, err = startGatewayTight(ctx, env.bin, mkdir(dir, "tight"), s.probe.hostPort()); err != nil {
		return fmt.Errorf("starting mxgate run (tight Caddyfile): %w", err)
	}
	return nil
}

// processes are s's running processes, homeserver first.
func (s *hsEnv) processes() []*process {
	var out []*process
	if s.hs != nil && s.hs.process() != nil {
		out = append(out, s.hs.process())
	}
	for _, g := range []*gateway{s.gateway, s.tight} {
		if g != nil {
			out = append(out, g.proc)
		}
	}
	return out
}

// stopAll stops s's gateways, probe and homeserver.
func (s *hsEnv) stopAll() {
	for _, g := range []*gateway{s.gateway, s.tight} {
		if g != nil {
			g.proc.stop(10 * time.Second)
		}
	}
	if s.probe != nil {
		s.probe.server.Close()
	}
	if s.hs != nil {
		s.hs.stop()
	}
}

// mkdir creates and returns dir/name; a failure surfaces when it is used.
func mkdir(dir, name string) string {
	p := filepath.Join(dir, name)
	_ = os.MkdirAll(p, 0o700)
	return p
}
