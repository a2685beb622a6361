package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The Synapse the suite runs is Debian sid's matrix-synapse package, in a
// minimal sid root made with debootstrap from the Debian archive the host's
// apt already uses (Debian stable has no matrix-synapse, and there is no
// PyPI here). The root is built once and kept under the user cache dir.

// synapseRootTimeout bounds a cold build of the root (debootstrap plus
// apt-get install): about 1.5-5 minutes on a quiet machine.
const synapseRootTimeout = 20 * time.Minute

// synapseWorkMount is where a Synapse instance's own folder (config,
// database, media, logs) is bind-mounted inside the root.
const synapseWorkMount = "/mxgate-work"

// synapseReadyMarker is written last into a complete root and holds the
// installed matrix-synapse version.
const synapseReadyMarker = ".mxgate-synapse-ready"

// synapseCacheDir is $MXGATE_SYNAPSE_CACHE or mxgate-synapse under the user
// cache dir ($XDG_CACHE_HOME or ~/.cache).
func synapseCacheDir() (string, error) {
	if dir := os.Getenv("MXGATE_SYNAPSE_CACHE"); dir != "" {
		return dir, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache dir for the Synapse root (set MXGATE_SYNAPSE_CACHE): %w", err)
	}
	return filepath.Join(cache, "mxgate-synapse"), nil
}

// provisionSynapseRoot makes sure cacheDir/root is a complete sid root with
// matrix-synapse installed, building it when it is not, and returns the
// root's path and Synapse's version. Concurrent runs serialise on a lock
// file; a root is only ever renamed into place once complete, so an
// interrupted build leaves nothing a later run would trust.
func provisionSynapseRoot(ctx context.Context, cacheDir string) (root, version string, err error) {
	if os.Geteuid() != 0 {
		return "", "", errors.New("running Synapse needs root (debootstrap, unshare --mount, chroot); " +
			"run as root or leave synapse out of MXGATE_E2E_HOMESERVERS")
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", "", err
	}
	lock, err := os.OpenFile(filepath.Join(cacheDir, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", "", err
	}
	defer lock.Close()
	// flock blocks; a build in another process is bounded by its own
	// timeout, so this wait is too.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // released on close anyway

	root = filepath.Join(cacheDir, "root")
	if v, err := os.ReadFile(filepath.Join(root, synapseReadyMarker)); err == nil {
		version = strings.TrimSpace(string(v))
		progress("Synapse root with matrix-synapse %s: cached in %s", version, root)
		return root, version, nil
	}
	ctx, cancel := context.WithTimeout(ctx, synapseRootTimeout)
	defer cancel()
	done := step("building the Synapse root in %s (one-time: debootstrap sid + apt-get install matrix-synapse, minutes)", root)
	version, err = buildSynapseRoot(ctx, cacheDir, root)
	done(err)
	return root, version, err
}

// buildSynapseRoot debootstraps sid into a scratch folder, installs
// matrix-synapse into it and renames it to root.
func buildSynapseRoot(ctx context.Context, cacheDir, root string) (string, error) {
	if err := ensureDebootstrap(ctx); err != nil {
		return "", err
	}
	mirror, err := hostDebianMirror()
	if err != nil {
		return "", err
	}
	scratch := filepath.Join(cacheDir, "root.partial")
	// Every mount made while building lives in a private mount namespace
	// (unshare --mount) and dies with it, so a leftover scratch folder
	// never has anything mounted inside it.
	if err := os.RemoveAll(scratch); err != nil {
		return "", err
	}
	if err := os.RemoveAll(root); err != nil { // incomplete: no marker
		return "", err
	}
	if err := runCommand(ctx, cacheDir, nil, "unshare", "--mount", "--propagation", "private",
		"debootstrap", "--variant=minbase", "sid", scratch, mirror); err != nil {
		return "", fmt.Errorf("debootstrap sid: %w", err)
	}
	aptConf := strings.Join([]string{
		// The archive's sid Release can be past its Valid-Until date
		// (snapshot mirrors): apt would refuse it.
		`Acquire::Check-Valid-Until "false";`,
		`APT::Install-Recommends "false";`,
		`APT::Install-Suggests "false";`,
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(scratch, "etc/apt/apt.conf.d/99mxgate"), []byte(aptConf), 0o644); err != nil {
		return "", err
	}
	// No service may start inside the root during installation.
	if err := os.WriteFile(filepath.Join(scratch, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return "", err
	}
	install := "apt-get update -q && apt-get install -y -q --no-install-recommends matrix-synapse && apt-get clean" +
		" && dpkg-query -W -f '${Version}' matrix-synapse > /" + synapseReadyMarker + ".tmp"
	if err := runInRoot(ctx, scratch, "", []string{"DEBIAN_FRONTEND=noninteractive"}, "sh", "-c", install); err != nil {
		return "", fmt.Errorf("installing matrix-synapse in the sid root: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(scratch, synapseWorkMount), 0o755); err != nil {
		return "", err
	}
	version, err := os.ReadFile(filepath.Join(scratch, synapseReadyMarker+".tmp"))
	if err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(scratch, synapseReadyMarker+".tmp"), filepath.Join(scratch, synapseReadyMarker)); err != nil {
		return "", err
	}
	if err := os.Rename(scratch, root); err != nil {
		return "", err
	}
	return strings.TrimSpace(string(version)), nil
}

// ensureDebootstrap installs Debian's debootstrap package on the host when
// it is missing.
func ensureDebootstrap(ctx context.Context) error {
	if _, err := exec.LookPath("debootstrap"); err == nil {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("debootstrap is not installed and there is no apt-get to install it")
	}
	done := step("apt-get install debootstrap")
	install := func() error {
		return runCommand(ctx, "/", []string{"DEBIAN_FRONTEND=noninteractive"},
			"apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap")
	}
	err := install()
	if err != nil { // a fresh machine may have no package lists yet
		if err = runCommand(ctx, "/", nil, "apt-get", "update", "-q"); err == nil {
			err = install()
		}
	}
	done(err)
	return err
}

// rootCommand returns the argv that runs argv inside root with a clean
// environment (so the host's Python settings cannot reach sid's Python),
// in a private mount namespace holding /proc, /dev and, when workDir is not
// empty, workDir bind-mounted at synapseWorkMount. The namespace, and with
// it every mount, ends when the command does.
func rootCommand(root, workDir string, env []string, argv ...string) []string {
	mounts := fmt.Sprintf("mount -t proc proc %q/proc && mount --rbind /dev %q/dev", root, root)
	if workDir != "" {
		mounts += fmt.Sprintf(" && mount --bind %q %q", workDir, filepath.Join(root, synapseWorkMount))
	}
	cmd := []string{"env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root"}
	cmd = append(cmd, env...)
	cmd = append(cmd, argv...)
	script := mounts + ` && exec chroot "$0" "$@"`
	return append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script, root}, cmd...)
}

// runInRoot runs a short command inside root (see rootCommand).
func runInRoot(ctx context.Context, root, workDir string, env []string, argv ...string) error {
	full := rootCommand(root, workDir, env, argv...)
	return runCommand(ctx, "/", nil, full[0], full[1:]...)
}
