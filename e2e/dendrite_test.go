package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// dendriteVersion is the homeserver the suite runs against.
const dendriteVersion = "0.13.8"

// dendriteCommands are the programs installed from the Dendrite module.
var dendriteCommands = []string{"dendrite", "generate-keys", "generate-config"}

// dendriteBinDir is where the Dendrite programs live: $MXGATE_DENDRITE_BIN, or
// mxgate-dendrite/bin under the user cache dir ($XDG_CACHE_HOME or ~/.cache).
func dendriteBinDir() (string, error) {
	if dir := os.Getenv("MXGATE_DENDRITE_BIN"); dir != "" {
		return dir, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache dir for Dendrite (set MXGATE_DENDRITE_BIN): %w", err)
	}
	return filepath.Join(cache, "mxgate-dendrite", "bin"), nil
}

// provisionDendrite makes sure binDir holds Dendrite dendriteVersion, running
// `go install` when it does not. Concurrent test runs serialise on a lock file
// so they never install into the same folder at once.
func provisionDendrite(ctx context.Context, binDir string) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(binDir, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	// flock blocks; an install in another process is bounded by its own
	// timeout, so this wait is too.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // released on close anyway

	if dendriteInstalled(ctx, binDir) {
		progress("Dendrite v%s: cached in %s", dendriteVersion, binDir)
		return nil
	}
	installCtx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	args := []string{"install"}
	for _, c := range dendriteCommands {
		args = append(args, "github.com/matrix-org/dendrite/cmd/"+c+"@v"+dendriteVersion)
	}
	done := step("installing Dendrite v%s into %s (one-time, takes minutes)", dendriteVersion, binDir)
	// Run outside the mxgate module so its go.mod plays no part.
	err = runCommand(installCtx, binDir, []string{"GOBIN=" + binDir}, "go", args...)
	done(err)
	return err
}

// dendriteInstalled reports whether every program is present and the server
// reports the expected version.
func dendriteInstalled(ctx context.Context, binDir string) bool {
	for _, c := range dendriteCommands {
		if _, err := os.Stat(filepath.Join(binDir, c)); err != nil {
			return false
		}
	}
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(vctx, filepath.Join(binDir, "dendrite"), "-version").Output()
	return err == nil && strings.TrimSpace(string(out)) == dendriteVersion
}

// dendrite is a running homeserver with SQLite databases in its own folder.
// It keeps its address across restarts.
type dendrite struct {
	binDir, dir, cfgPath, addr string
	proc                       *process
}

// startDendrite generates keys and a CI config in dir, then starts Dendrite on
// a free loopback port with open registration and waits until it answers.
func startDendrite(ctx context.Context, binDir, dir string) (*dendrite, error) {
	if err := runCommand(ctx, dir, nil, filepath.Join(binDir, "generate-keys"), "-private-key", "matrix_key.pem"); err != nil {
		return nil, err
	}
	cfg, err := exec.CommandContext(ctx, filepath.Join(binDir, "generate-config"), "-ci", "-dir", dir).Output()
	if err != nil {
		return nil, fmt.Errorf("generate-config: %w", err)
	}
	tuned, err := tuneDendriteConfig(string(cfg))
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "dendrite.yaml")
	if err := os.WriteFile(cfgPath, []byte(tuned), 0o600); err != nil {
		return nil, err
	}
	addrs, err := freeLoopbackAddrs(1)
	if err != nil {
		return nil, err
	}
	d := &dendrite{binDir: binDir, dir: dir, cfgPath: cfgPath, addr: addrs[0]}
	if err := d.start(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// start runs Dendrite on d.addr and waits until it answers. Dendrite runs in
// its folder (the key path in the config is relative to it), so nothing it
// writes lands in the source tree.
func (d *dendrite) start(ctx context.Context) error {
	p, err := startProcess("dendrite", d.dir, filepath.Join(d.dir, "dendrite.log"), nil,
		filepath.Join(d.binDir, "dendrite"),
		"-config", d.cfgPath, "-http-bind-address", d.addr, "-really-enable-open-registration")
	if err != nil {
		return err
	}
	readyCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := waitHTTP(readyCtx, p, d.url()+"/_matrix/client/versions"); err != nil {
		p.stop(5 * time.Second)
		return err
	}
	d.proc = p
	return nil
}

func (d *dendrite) url() string { return "http://" + d.addr }

func (d *dendrite) stop() {
	if d.proc != nil {
		d.proc.stop(10 * time.Second)
	}
}

// restart stops Dendrite and starts it again on the same port and databases.
func (d *dendrite) restart(ctx context.Context) error {
	d.stop()
	return d.start(ctx)
}

// tuneDendriteConfig edits the `generate-config -ci` output: Dendrite's own
// rate limiting off (the herd tests measure mxgate, not Dendrite), no
// federation, no presence (it adds timing noise to /sync), quiet logs, and
// JetStream on disk (in its storage_path, the test's folder) as production
// runs it: in memory, an event Dendrite acknowledged while it was still in
// its input stream is lost with a restart (seen: 12 of 196).
// Every edit must find its line, so a changed generator fails loudly.
func tuneDendriteConfig(cfg string) (string, error) {
	edits := []struct{ from, to string }{
		{"  rate_limiting:\n    enabled: true\n", "  rate_limiting:\n    enabled: false\n"},
		{"  disable_federation: false\n", "  disable_federation: true\n"},
		{"    enable_inbound: true\n", "    enable_inbound: false\n"},
		{"    enable_outbound: true\n", "    enable_outbound: false\n"},
		{"  level: trace\n", "  level: warn\n"},
		{"    in_memory: true\n", "    in_memory: false\n"},
	}
	for _, e := range edits {
		switch {
		case strings.Contains(cfg, e.from):
			cfg = strings.Replace(cfg, e.from, e.to, 1)
		case strings.Contains(cfg, e.to):
			// already as wanted
		default:
			return "", fmt.Errorf("dendrite config: expected %q or %q in generated config", e.from, e.to)
		}
	}
	return cfg, nil
}
