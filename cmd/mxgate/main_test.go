package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/mxgate/mxgate/internal/testhome"
)

// TestMain keeps Caddy's storage and config autosave out of the user's home
// before any test starts Caddy (see testhome.Isolate for why a t.Setenv in
// a test is too late).
func TestMain(m *testing.M) {
	cleanup, err := testhome.Isolate("mxgate-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolating Caddy's files:", err)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// TestRunLeavesHomeAlone re-runs the test that starts `mxgate gateway`'s
// config in this process with a fresh HOME and XDG dirs and checks that
// nothing was written there.
func TestRunLeavesHomeAlone(t *testing.T) {
	testhome.CheckTestsLeaveHomeAlone(t, "TestCtlShedStatusRestore")
}
