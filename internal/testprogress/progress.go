package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json's TestEvent, plus the
// build events go test adds).
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	FailedBuild string // on a package's fail: the package whose build failed
}

// tailLines is how much of a failed package's output is shown when no
// single test failed (a crash in TestMain, a timeout).
const tailLines = 100

// progress is the state of one run. Its methods are called from one
// goroutine.
type progress struct {
	w         io.Writer
	now       func() time.Time
	start     time.Time
	lastPrint time.Time

	running map[string]time.Time       // package → when its test binary started
	tests   map[string]map[string]*buf // package → test → output so far
	tail    map[string]*buf            // package → its last tailLines lines
	failedT map[string]bool            // packages with a failed test
	passed  int
	noTests int
	failed  []string
	// Test counts (subtests included) for the closing line.
	testsPassed, testsFailed, testsSkipped int
}

type buf struct{ lines []string }

func newProgress(w io.Writer, now func() time.Time) *progress {
	t := now()
	return &progress{
		w: w, now: now, start: t, lastPrint: t,
		running: map[string]time.Time{}, tests: map[string]map[string]*buf{},
		tail: map[string]*buf{}, failedT: map[string]bool{},
	}
}

func (p *progress) print(s string) {
	io.WriteString(p.w, s)
	if !strings.HasSuffix(s, "\n") {
		io.WriteString(p.w, "\n")
	}
	p.lastPrint = p.now()
}

// line handles one line of input; what is not JSON is passed through.
func (p *progress) line(s string) {
	var e event
	if !strings.HasPrefix(s, "{") || json.Unmarshal([]byte(s), &e) != nil || e.Action == "" {
		p.print(s)
		return
	}
	switch e.Action {
	case "build-output":
		p.print(e.Output)
	case "start":
		p.running[e.Package] = p.now()
	case "output":
		p.output(e)
	case "pass", "skip", "fail":
		if e.Test != "" {
			p.testDone(e)
		} else {
			p.packageDone(e)
		}
	}
}

func (p *progress) output(e event) {
	t := p.tail[e.Package]
	if t == nil {
		t = &buf{}
		p.tail[e.Package] = t
	}
	t.lines = append(t.lines, e.Output)
	if len(t.lines) > 2*tailLines {
		t.lines = slices.Clone(t.lines[len(t.lines)-tailLines:])
	}
	if e.Test == "" {
		// TestMain's own lines and go test's result line; the test
		// binary's bare PASS adds nothing to the ok line after it.
		if e.Output != "PASS\n" {
			p.print(e.Output)
		}
		return
	}
	if isProgress(e) {
		p.print(e.Output)
	}
	byTest := p.tests[e.Package]
	if byTest == nil {
		byTest = map[string]*buf{}
		p.tests[e.Package] = byTest
	}
	b := byTest[e.Test]
	if b == nil {
		b = &buf{}
		byTest[e.Test] = b
	}
	b.lines = append(b.lines, e.Output)
}

// testDone prints a failed test's output and forgets a passed one's.
func (p *progress) testDone(e event) {
	b := p.tests[e.Package][e.Test]
	delete(p.tests[e.Package], e.Test)
	switch e.Action {
	case "pass":
		p.testsPassed++
	case "skip":
		p.testsSkipped++
	case "fail":
		p.testsFailed++
	}
	if e.Action != "fail" {
		return
	}
	p.failedT[e.Package] = true
	if b != nil {
		p.print(strings.Join(b.lines, ""))
	}
}

func (p *progress) packageDone(e event) {
	delete(p.running, e.Package)
	delete(p.tests, e.Package)
	switch e.Action {
	case "pass":
		p.passed++
	case "skip":
		p.noTests++
	case "fail":
		p.failed = append(p.failed, e.Package)
		if !p.failedT[e.Package] && e.FailedBuild == "" {
			if t := p.tail[e.Package]; t != nil {
				p.print("--- output of " + e.Package + " (last lines):\n" + strings.Join(last(t.lines, tailLines), ""))
			}
		}
	}
	delete(p.tail, e.Package)
}

// idle prints what is still going on if nothing was printed for quiet.
func (p *progress) idle(quiet time.Duration) {
	now := p.now()
	if now.Sub(p.lastPrint) < quiet {
		return
	}
	elapsed := now.Sub(p.start).Round(time.Second)
	if len(p.running) == 0 {
		p.print(fmt.Sprintf("... %s: building test binaries", elapsed))
		return
	}
	pkgs := make([]string, 0, len(p.running))
	for pkg, since := range p.running {
		pkgs = append(pkgs, fmt.Sprintf("%s (%s)", pkg, now.Sub(since).Round(time.Second)))
	}
	slices.Sort(pkgs)
	p.print(fmt.Sprintf("... %s: still running %s", elapsed, strings.Join(pkgs, ", ")))
}

// finish prints the closing counts, packages then tests (the last line in
// the plain "tests: N passed, N failed, N skipped" form CI systems read),
// and reports whether every package passed.
func (p *progress) finish() bool {
	summary := fmt.Sprintf("%d packages passed, %d failed, %d without tests, in %s",
		p.passed, len(p.failed), p.noTests, p.now().Sub(p.start).Round(time.Second))
	if len(p.failed) > 0 {
		summary += "\nFAILED: " + strings.Join(p.failed, " ")
	}
	summary += fmt.Sprintf("\ntests: %d passed, %d failed, %d skipped", p.testsPassed, p.testsFailed, p.testsSkipped)
	p.print(summary)
	return len(p.failed) == 0
}

// isProgress reports whether a line a test printed is a progress line,
// shown at once: one that starts with the package's name and a colon, as
// "e2e: installing Dendrite ...", printed to stdout or stderr (t.Log lines
// are indented and never match). Everything else a test prints is shown
// only if it fails.
func isProgress(e event) bool {
	return strings.HasPrefix(e.Output, path.Base(e.Package)+": ")
}

func last(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}
