package main

import (
	"strings"
	"testing"
	"time"
)

// clock is a manual clock for the progress under test.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func feed(p *progress, lines ...string) {
	for _, l := range lines {
		p.line(l)
	}
}

func TestPassingRunShowsResultLinesAndCount(t *testing.T) {
	var out strings.Builder
	c := &clock{t: time.Unix(0, 0)}
	p := newProgress(&out, c.now)
	feed(p,
		`{"Action":"start","Package":"m/a"}`,
		`{"Action":"run","Package":"m/a","Test":"TestX"}`,
		`{"Action":"output","Package":"m/a","Test":"TestX","Output":"=== RUN   TestX\n"}`,
		`{"Action":"output","Package":"m/a","Test":"TestX","Output":"    x_test.go:9: noisy log\n"}`,
		`{"Action":"output","Package":"m/a","Test":"TestX","Output":"--- PASS: TestX (0.00s)\n"}`,
		`{"Action":"pass","Package":"m/a","Test":"TestX"}`,
		`{"Action":"output","Package":"m/a","Output":"PASS\n"}`,
		`{"Action":"output","Package":"m/a","Output":"ok  \tm/a\t0.01s\n"}`,
		`{"Action":"pass","Package":"m/a"}`,
		`{"Action":"output","Package":"m/b","Output":"?   \tm/b\t[no test files]\n"}`,
		`{"Action":"skip","Package":"m/b"}`,
	)
	c.advance(90 * time.Second)
	if !p.finish() {
		t.Error("finish reported a failure for a passing run")
	}
	want := "ok  \tm/a\t0.01s\n?   \tm/b\t[no test files]\n1 packages passed, 0 failed, 1 without tests, in 1m30s\ntests: 1 passed, 0 failed, 0 skipped\n"
	if out.String() != want {
		t.Errorf("output:\n%q\nwant:\n%q", out.String(), want)
	}
}

func TestTestMainLinesAppearAsTheyArePrinted(t *testing.T) {
	var out strings.Builder
	c := &clock{t: time.Unix(0, 0)}
	p := newProgress(&out, c.now)
	feed(p,
		`{"Action":"start","Package":"m/e2e"}`,
		`{"Action":"output","Package":"m/e2e","Output":"e2e: installing Dendrite into /c/mxgate-dendrite\n"}`,
	)
	if out.String() != "e2e: installing Dendrite into /c/mxgate-dendrite\n" {
		t.Errorf("TestMain output not passed through at once: %q", out.String())
	}
}

func TestProgressLinesInsideATestAppearAtOnce(t *testing.T) {
	var out strings.Builder
	c := &clock{t: time.Unix(0, 0)}
	p := newProgress(&out, c.now)
	feed(p,
		`{"Action":"start","Package":"m/e2e"}`,
		`{"Action":"output","Package":"m/e2e","Test":"TestSynapse","Output":"=== RUN   TestSynapse\n"}`,
		`{"Action":"output","Package":"m/e2e","Test":"TestSynapse","Output":"e2e: building the Synapse root (one-time)\n"}`,
		`{"Action":"output","Package":"m/e2e","Test":"TestSynapse","Output":"    synapse_test.go:40: e2e: a t.Log line\n"}`,
	)
	if out.String() != "e2e: building the Synapse root (one-time)\n" {
		t.Errorf("output: %q", out.String())
	}
}

func TestFailedTestOutputAndFailedPackageAreShown(t *testing.T) {
	var out strings.Builder
	c := &clock{t: time.Unix(0, 0)}
	p := newProgress(&out, c.now)
	feed(p,
		`{"Action":"start","Package":"m/a"}`,
		`{"Action":"output","Package":"m/a","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}`,
		`{"Action":"pass","Package":"m/a","Test":"TestOK"}`,
		`{"Action":"output","Package":"m/a","Test":"TestBad","Output":"=== RUN   TestBad\n"}`,
		`{"Action":"output","Package":"m/a","Test":"TestBad","Output":"    a_test.go:7: want 2, got 3\n"}`,
		`{"Action":"output","Package":"m/a","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}`,
		`{"Action":"fail","Package":"m/a","Test":"TestBad"}`,
		`{"Action":"output","Package":"m/a","Output":"FAIL\n"}`,
		`{"Action":"output","Package":"m/a","Output":"FAIL\tm/a\t0.02s\n"}`,
		`{"Action":"fail","Package":"m/a"}`,
	)
	if p.finish() {
		t.Error("finish reported success for a failed package")
	}
	got := out.String()
	for _, want := range []string{"a_test.go:7: want 2, got 3\n--- FAIL: TestBad", "FAIL\tm/a\t0.02s\n", "0 packages passed, 1 failed", "FAILED: m/a"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "TestOK") {
		t.Errorf("a passing test's output was shown:\n%s", got)
	}
}

func TestCrashOutsideATestShowsThePackageTail(t *testing.T) {
	var out strings.Builder
	c := &clock{t: time.Unix(0, 0)}
	p := newProgress(&out, c.now)
	feed(p,
		`{"Action":"start","Package":"m/a"}`,
		`{"Action":"output","Package":"m/a","Test":"TestHang","Output":"=== RUN   TestHang\n"}`,
		`{"Action":"output","Package":"m/a","Test":"TestHang","Output":"goroutine 7 [select]:\n"}`,
		`{"Action":"output","Package":"m/a","Output":"FAIL\tm/a\t600.0s\n"}`,
		`{"Action":"fail","Package":"m/a"}`,
	)
	if !strings.Contains(out.String(), "goroutine 7 [select]:") {
		t.Errorf("the failing package's last lines were not shown:\n%s", out.String())
	}
}

func TestBuildFailureIsShownOnce(t *testing.T) {
	var out strings.Builder
	c := &clock{t: time.Unix(0, 0)}
	p := newProgress(&out, c.now)
	feed(p,
		`{"ImportPath":"m/a [m/a.test]","Action":"build-output","Output":"a/x.go:3:1: syntax error\n"}`,
		`{"ImportPath":"m/a [m/a.test]","Action":"build-fail"}`,
		`{"Action":"start","Package":"m/a"}`,
		`{"Action":"output","Package":"m/a","Output":"FAIL\tm/a [build failed]\n"}`,
		`{"Action":"fail","Package":"m/a","FailedBuild":"m/a [m/a.test]"}`,
	)
	if p.finish() {
		t.Error("finish reported success after a build failure")
	}
	got := out.String()
	if strings.Count(got, "syntax error") != 1 || strings.Count(got, "[build failed]") != 1 {
		t.Errorf("build failure not shown exactly once:\n%s", got)
	}
}

func TestQuietPeriodsSayWhatIsGoingOn(t *testing.T) {
	var out strings.Builder
	c := &clock{t: time.Unix(0, 0)}
	p := newProgress(&out, c.now)
	c.advance(30 * time.Second)
	p.idle(time.Minute)
	if out.Len() != 0 {
		t.Fatalf("spoke before a minute of silence: %q", out.String())
	}
	c.advance(30 * time.Second)
	p.idle(time.Minute)
	feed(p, `{"Action":"start","Package":"m/e2e"}`)
	c.advance(30 * time.Second)
	p.idle(time.Minute) // 30 s after the last line: quiet
	c.advance(45 * time.Second)
	p.idle(time.Minute)
	want := "... 1m0s: building test binaries\n... 2m15s: still running m/e2e (1m15s)\n"
	if out.String() != want {
		t.Errorf("output:\n%q\nwant:\n%q", out.String(), want)
	}
}

func TestNonJSONLinesPassThrough(t *testing.T) {
	var out strings.Builder
	c := &clock{t: time.Unix(0, 0)}
	p := newProgress(&out, c.now)
	feed(p, "go: downloading example.org/x v1.0.0", `{"not":"an event"}`)
	if out.String() != "go: downloading example.org/x v1.0.0\n{\"not\":\"an event\"}\n" {
		t.Errorf("output: %q", out.String())
	}
}
