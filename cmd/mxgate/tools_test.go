//go:build linux

package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The console and alert tests run real tools: Debian's chromium and
// prometheus, and playwright-core from npm. Each is installed on first use
// (apt-get when running as root, npm into the user cache dir), under a
// lock, so a fresh CI machine needs nothing set up beforehand.

// toolInstallTimeout bounds one apt-get or npm install.
const toolInstallTimeout = 5 * time.Minute

// playwrightVersion is the pinned playwright-core the browser test drives
// chromium with.
const playwrightVersion = "1.65.1"

// debianTool returns the path of bin, installing Debian package pkg with
// apt-get if bin is missing and the test runs as root. Without root and
// without the tool, the test is skipped with the command to run.
func debianTool(t *testing.T, bin, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(bin); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s is not installed; run: apt-get install --no-install-recommends %s", bin, pkg)
	}
	unlock := lockCache(t, "apt")
	defer unlock()
	if p, err := exec.LookPath(bin); err == nil { // another test process installed it
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), toolInstallTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends",
		"-o", "DPkg::Lock::Timeout=120", pkg)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get install %s: %v\n%s", pkg, err, tail(out))
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("%s still missing after installing %s", bin, pkg)
	}
	return p
}

// playwrightModules returns a node_modules directory holding the pinned
// playwright-core, installing it into the user cache dir on first use.
// playwright-core brings no browser of its own: it drives Debian's.
func playwrightModules(t *testing.T) string {
	t.Helper()
	npm := debianTool(t, "npm", "npm")
	dir := filepath.Join(userCacheDir(t), "mxgate-npm", "playwright-core-"+playwrightVersion)
	stamp := filepath.Join(dir, "node_modules", "playwright-core", "package.json")
	if installedVersion(stamp) == playwrightVersion {
		return filepath.Join(dir, "node_modules")
	}
	unlock := lockCache(t, "npm")
	defer unlock()
	if installedVersion(stamp) == playwrightVersion {
		return filepath.Join(dir, "node_modules")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pkg := `{"name":"mxgate-browser-test","private":true,"dependencies":{"playwright-core":"` + playwrightVersion + `"}}`
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(pkg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), toolInstallTimeout)
	defer cancel()
	// The registry is whatever npm is configured with on this machine.
	cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--save-exact")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install playwright-core@%s: %v\n%s", playwrightVersion, err, tail(out))
	}
	if v := installedVersion(stamp); v != playwrightVersion {
		t.Fatalf("npm installed playwright-core %q, want %s", v, playwrightVersion)
	}
	return filepath.Join(dir, "node_modules")
}

func installedVersion(packageJSON string) string {
	b, err := os.ReadFile(packageJSON)
	if err != nil {
		return ""
	}
	const key = `"version":`
	i := strings.Index(string(b), key)
	if i < 0 {
		return ""
	}
	v := strings.TrimSpace(string(b[i+len(key):]))
	if j := strings.IndexAny(v, ",\n}"); j >= 0 {
		v = v[:j]
	}
	return strings.Trim(strings.TrimSpace(v), `"`)
}

func userCacheDir(t *testing.T) string {
	t.Helper()
	dir, err := os.UserCacheDir()
	if err != nil {
		home, herr := os.UserHomeDir()
		if herr != nil {
			t.Fatalf("no user cache dir: %v", errors.Join(err, herr))
		}
		dir = filepath.Join(home, ".cache")
	}
	return dir
}

// lockCache takes an exclusive file lock named name under the user cache
// dir, so concurrent test processes install a tool once.
func lockCache(t *testing.T, name string) (unlock func()) {
	t.Helper()
	dir := filepath.Join(userCacheDir(t), "mxgate-npm")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, name+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}

func tail(b []byte) string {
	const n = 4000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
