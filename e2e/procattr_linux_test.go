package e2e

import "syscall"

// childProcAttr puts a child in its own process group (so stop can signal the
// group) and kills it if the test binary dies without cleaning up, e.g. on a
// `go test -timeout` panic.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
