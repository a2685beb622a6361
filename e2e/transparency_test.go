package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestTransparency runs the same mautrix client flow directly against the
// homeserver and through `mxgate gateway`, and requires every call to get the
// same status and the same JSON, modulo ids and times.
func TestTransparency(t *testing.T) {
	forEachHomeserver(t, testTransparency)
}

func testTransparency(t *testing.T, s *hsEnv) {
	checkGoroutineLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	suffix := uniqueSuffix()
	direct := runClientFlow(t, ctx, s, s.hs.url(), "d"+suffix)
	via := runClientFlow(t, ctx, s, s.gateway.url, "g"+suffix)

	compareFlows(t, direct, via)
	// The long poll must be woken by the message, not by its own timeout.
	for _, r := range []*flowRun{direct, via} {
		if r.wakeDelay > longPollTimeout/3 {
			t.Errorf("long-poll /sync via %s returned %v after the send; want well under the %v timeout",
				r.base, r.wakeDelay, longPollTimeout)
		}
	}
}

// compareFlows fails the test for every step whose exchanges differ between
// two runs after normalization.
func compareFlows(t *testing.T, a, b *flowRun) {
	t.Helper()
	if len(a.steps) != len(b.steps) {
		t.Fatalf("flows made %d and %d calls", len(a.steps), len(b.steps))
	}
	for i := range a.steps {
		sa, sb := a.steps[i], b.steps[i]
		if sa.op != sb.op {
			t.Fatalf("step %d: %q vs %q", i, sa.op, sb.op)
		}
		da, db := describeStep(a, sa), describeStep(b, sb)
		if da != db {
			t.Errorf("step %q differs\n--- direct (%s)\n%s\n--- through mxgate (%s)\n%s", sa.op, a.base, da, b.base, db)
		}
	}
}

// comparedHeaders are the response headers a client acts on that a proxy
// must pass through unchanged.
var comparedHeaders = []string{"Content-Type", "Content-Disposition", "Retry-After"}

// describeStep renders a step's exchanges in normalized form.
func describeStep(r *flowRun, s flowStep) string {
	n := newNormalizer(r.names, s.unordered)
	var out strings.Builder
	for _, e := range s.exchanges {
		fmt.Fprintf(&out, "%s -> %d\n", e.method, e.status)
		for _, h := range comparedHeaders {
			if v := e.header.Values(h); len(v) > 0 {
				fmt.Fprintf(&out, "%s: %q\n", h, v)
			}
		}
		out.WriteString(n.normalizeBody(e.body))
	}
	return out.String()
}
