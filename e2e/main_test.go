// Package e2e runs mxgate, built as the real binary, in front of a real
// Dendrite homeserver and drives both with mautrix-go clients. It provisions
// Dendrite itself (see dendrite_test.go) and is skipped under -short.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// suite is the shared environment every test in the package runs against.
type suite struct {
	dendrite *dendrite
	gateway  *gateway       // `mxgate gateway` with built-in defaults
	tight    *gateway       // `mxgate run` with tightCaddyfile, upstream via probe
	probe    *upstreamProbe // between tight and Dendrite
	setupErr error          // why the gateways are missing, if they are
}

var env suite

// needGateways fails the test when the mxgate processes could not be set up.
func needGateways(t *testing.T) {
	t.Helper()
	if env.setupErr != nil {
		t.Fatalf("mxgate not available: %v", env.setupErr)
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped under -short (needs Dendrite and a full mxgate build)")
		os.Exit(0)
	}
	os.Exit(runSuite(m))
}

// runSuite starts Dendrite and both gateways, runs the tests, and stops every
// process before returning, whatever happened.
func runSuite(m *testing.M) int {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "mxgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	binDir, err := dendriteBinDir()
	if err == nil {
		err = provisionDendrite(ctx, binDir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: provisioning Dendrite:", err)
		return 1
	}
	if env.dendrite, err = startDendrite(ctx, binDir, mkdir(tmp, "dendrite")); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting Dendrite:", err)
		return 1
	}
	procs := []*process{env.dendrite.proc}
	defer func() {
		for _, p := range procs {
			p.stop(10 * time.Second)
		}
		if env.probe != nil {
			env.probe.server.Close()
		}
	}()

	env.setupErr = startGateways(ctx, tmp, &procs)
	code := m.Run()
	if code != 0 {
		for _, p := range procs {
			fmt.Fprintf(os.Stderr, "\n===== %s log tail (%s) =====\n%s\n", p.name, p.logPath, p.logTail(60))
		}
	}
	return code
}

// startGateways builds mxgate and starts the default and the tight gateway,
// appending each started process to procs for the caller to stop.
func startGateways(ctx context.Context, tmp string, procs *[]*process) error {
	bin, err := buildMxgate(ctx, tmp)
	if err != nil {
		return fmt.Errorf("building mxgate: %w", err)
	}
	if env.gateway, err = startGatewayDefaults(ctx, bin, mkdir(tmp, "gateway"), env.dendrite.url); err != nil {
		return fmt.Errorf("starting mxgate gateway: %w", err)
	}
	*procs = append(*procs, env.gateway.proc)
	if env.probe, err = newUpstreamProbe(env.dendrite.url); err != nil {
		return err
	}
	if env.tight, err = startGatewayTight(ctx, bin, mkdir(tmp, "tight"), env.probe.hostPort()); err != nil {
		return fmt.Errorf("starting mxgate run (tight Caddyfile): %w", err)
	}
	*procs = append(*procs, env.tight.proc)
	return nil
}

// mkdir creates and returns dir/name; a failure surfaces when it is used.
func mkdir(dir, name string) string {
	p := filepath.Join(dir, name)
	_ = os.MkdirAll(p, 0o700)
	return p
}
