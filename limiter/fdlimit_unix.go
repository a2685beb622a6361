//go:build unix

package limiter

import "syscall"

// FDLimit returns the process's soft RLIMIT_NOFILE; ok is false if it
// cannot be read.
func FDLimit() (soft uint64, ok bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return uint64(rl.Cur), true
}
