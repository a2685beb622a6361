package caddymodule

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestMain keeps Caddy's config autosave out of the user's home: the path is
// computed once at init, so setting XDG_CONFIG_HOME in a test is too late.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mxgate-caddymodule-test-")
	if err != nil {
		panic(err)
	}
	caddy.ConfigAutosavePath = filepath.Join(dir, "autosave.json")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
