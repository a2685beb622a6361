// Package testhome keeps tests that run Caddy in their own process out of the
// user's home directory, and checks that they stay out.
//
// Caddy and CertMagic pick their file locations from $XDG_DATA_HOME,
// $XDG_CONFIG_HOME and $HOME once, when their packages initialise:
// caddy.DefaultStorage (locks/, last_clean.json and every certificate of a
// config without its own storage), caddy.ConfigAutosavePath (autosave.json
// on every config load that does not turn persistence off) and
// certmagic.Default.Storage. A t.Setenv in a test comes too late to move
// them, so every test package that starts Caddy calls Isolate from TestMain.
package testhome

import (
	"os"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
)

// Isolate moves every place Caddy writes by default into a fresh temporary
// directory and returns a function that removes it. It sets XDG_DATA_HOME and
// XDG_CONFIG_HOME for what Caddy reads at run time (caddy.AppDataDir for
// instance.uuid and mxgate's default toggle state file; child processes
// inherit them) and re-points what Caddy and CertMagic fixed at init. HOME and
// XDG_CACHE_HOME are left alone: nothing in Caddy writes there, and a child
// `go` command needs them to find its caches. Call it in TestMain before
// m.Run, while no test has started Caddy.
func Isolate(prefix string) (cleanup func(), err error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	for name, sub := range map[string]string{"XDG_DATA_HOME": "data", "XDG_CONFIG_HOME": "config"} {
		if err := os.Setenv(name, filepath.Join(dir, sub)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	caddy.ConfigAutosavePath = filepath.Join(caddy.AppConfigDir(), "autosave.json")
	storage := &certmagic.FileStorage{Path: caddy.AppDataDir()}
	caddy.DefaultStorage = storage
	certmagic.Default.Storage = storage
	return func() { os.RemoveAll(dir) }, nil
}
