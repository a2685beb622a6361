package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// homeserver is a real homeserver the suite runs against. Users register
// through the client API (open registration, m.login.dummy) on both, so the
// same client code drives either.
type homeserver interface {
	// url is the homeserver's own base URL, for direct (unproxied) requests.
	url() string
	// restart stops the homeserver and starts it again on the same port
	// and database, returning once it answers again.
	restart(ctx context.Context) error
	// stop ends the homeserver and everything it started; safe to repeat.
	stop()
	// process is the homeserver's current process, for its log.
	process() *process
	// restartDuplicates is how many messages a restart may store twice
	// when that many clients were each sending one as it stopped: 0 if the
	// homeserver remembers transaction IDs across restarts.
	restartDuplicates(senders int) int
}

func (d *dendrite) process() *process { return d.proc }
func (s *synapse) process() *process  { return s.proc }

// Dendrite keeps transaction IDs in an in-memory cache only.
func (d *dendrite) restartDuplicates(senders int) int { return senders }

// Synapse stores transaction IDs with the events (event_txn_id_device).
func (s *synapse) restartDuplicates(int) int { return 0 }

// homeserverNames are the homeservers the suite knows, in the order it runs
// them.
var homeserverNames = []string{"dendrite", "synapse"}

// selectedHomeservers reads MXGATE_E2E_HOMESERVERS (a comma list of
// homeserverNames; default all of them).
func selectedHomeservers() ([]string, error) {
	v := strings.TrimSpace(os.Getenv("MXGATE_E2E_HOMESERVERS"))
	if v == "" {
		return homeserverNames, nil
	}
	var out []string
	for _, name := range strings.Split(v, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(homeserverNames, name) {
			return nil, fmt.Errorf("MXGATE_E2E_HOMESERVERS: unknown homeserver %q (known: %s)", name, strings.Join(homeserverNames, ", "))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// hsEnv is one homeserver of the suite with the gateways in front of it.
type hsEnv struct {
	name     string
	hs       homeserver
	gateway  *gateway       // `mxgate gateway` with built-in defaults
	tight    *gateway       // `mxgate run` with tightCaddyfile, upstream via probe
	probe    *upstreamProbe // between tight and the homeserver
	setupErr error          // why the homeserver or its gateways are missing
}

// forEachHomeserver runs fn as a subtest named after each homeserver of the
// suite. A homeserver whose setup failed fails its subtest.
func forEachHomeserver(t *testing.T, fn func(t *testing.T, s *hsEnv)) {
	t.Helper()
	for _, s := range env.homeservers {
		t.Run(s.name, func(t *testing.T) {
			if s.setupErr != nil {
				t.Fatalf("%s and its gateways not available: %v", s.name, s.setupErr)
			}
			fn(t, s)
		})
	}
}
