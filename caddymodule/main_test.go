package caddymodule

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
	cleanup, err := testhome.Isolate("mxgate-caddymodule-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolating Caddy's files:", err)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// TestRunLeavesHomeAlone re-runs tests that start Caddy with a fresh HOME and
// XDG dirs and checks that nothing was written there: storage (locks/,
// last_clean.json), autosave.json and toggle state files all stay in the
// temporary directories TestMain and the tests choose.
func TestRunLeavesHomeAlone(t *testing.T) {
	testhome.CheckTestsLeaveHomeAlone(t,
		"TestCaddyReloadKeepsInflightAndMetrics",  // Caddyfile config: autosave and storage cleaning
		"TestAdminToggleSurvivesReloadAndRestart", // admin API, toggle state file
	)
}
