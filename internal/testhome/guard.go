package testhome

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// childTimeout bounds the child test run; the tests it re-runs take seconds.
const childTimeout = 3 * time.Minute

// CheckTestsLeaveHomeAlone runs the named top-level tests of this test
// binary again in a child process whose HOME, XDG_DATA_HOME, XDG_CONFIG_HOME
// and XDG_CACHE_HOME point into a fresh empty directory, and fails t unless
// each of them passed there and nothing was written under that directory.
// Name tests that start Caddy: the child's TestMain must keep Caddy's files
// out of the home it was given (see Isolate).
func CheckTestsLeaveHomeAlone(t *testing.T, tests ...string) {
	t.Helper()
	if len(tests) == 0 {
		t.Fatal("CheckTestsLeaveHomeAlone: name at least one test")
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	quoted := make([]string, len(tests))
	for i, name := range tests {
		quoted[i] = regexp.QuoteMeta(name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), childTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"-test.run", "^("+strings.Join(quoted, "|")+")$", "-test.count", "1", "-test.v",
		"-test.timeout", childTimeout.String())
	cmd.Env = append(withoutHomeVars(os.Environ()),
		"HOME="+home,
		"XDG_DATA_HOME="+filepath.Join(home, ".local", "share"),
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("re-running %v with a fresh HOME: %v\n%s", tests, err, tail(out, 4000))
	}
	for _, name := range tests {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass in the child run:\n%s", name, tail(out, 4000))
		}
	}
	var written []string
	_ = filepath.WalkDir(home, func(path string, d fs.DirEntry, err error) error {
		if path != home && len(written) < 20 {
			written = append(written, path)
		}
		return nil
	})
	if len(written) > 0 {
		t.Errorf("the tests wrote into HOME/XDG dirs they were given (first %d):\n%s", len(written), strings.Join(written, "\n"))
	}
}

// withoutHomeVars drops the variables the child gets fresh values for.
func withoutHomeVars(env []string) []string {
	var kept []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME":
			continue
		}
		kept = append(kept, kv)
	}
	return kept
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
