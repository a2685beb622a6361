package e2e

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progressOut is where provisioning progress goes. `go test` buffers a test
// binary's stdout and stderr and shows them only when the package fails or
// under -v, so a cold provisioning run would look hung. When the go command's
// own stderr (the test binary's parent) is a terminal or a pipe, lines are
// written there as well, which makes them visible in `make test` and CI logs.
// A regular file is left alone: the go command writes it at its own offset
// and would overwrite what we appended.
var progressOut = sync.OnceValue(func() io.Writer {
	parent, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/2", os.Getppid()), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return os.Stderr
	}
	pst, err1 := parent.Stat()
	own, err2 := os.Stderr.Stat()
	if err1 != nil || err2 != nil || os.SameFile(pst, own) || pst.Mode().IsRegular() {
		parent.Close()
		return os.Stderr
	}
	return io.MultiWriter(os.Stderr, parent)
})

var progressMu sync.Mutex

// progress prints one line about a provisioning step.
func progress(format string, args ...any) {
	progressMu.Lock()
	defer progressMu.Unlock()
	fmt.Fprintf(progressOut(), "e2e: "+format+"\n", args...)
}

// step prints a line when a provisioning step starts and returns a function
// that prints its outcome and duration, for use as
// `done := step(...); err := work(); done(err)`.
func step(format string, args ...any) func(error) {
	what := fmt.Sprintf(format, args...)
	progress("%s ...", what)
	began := time.Now()
	return func(err error) {
		took := time.Since(began).Round(100 * time.Millisecond)
		if err != nil {
			progress("%s failed after %v", what, took)
			return
		}
		progress("%s done in %v", what, took)
	}
}
