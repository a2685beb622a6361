//go:build !unix

package limiter

// FDLimit reports that this platform has no RLIMIT_NOFILE.
func FDLimit() (soft uint64, ok bool) { return 0, false }
