//go:build unix && !linux

package e2e

import "syscall"

// childProcAttr puts a child in its own process group so stop can signal the
// group. Without Pdeathsig, children outlive a test binary that panics.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
