package gate

import (
	"net/http"
	"testing"
	"time"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// /versions survives a brownout: matrix-js-sdk polls it before every /sync
// retry, so refusing it keeps a whole browser herd away for 5-10 s more per
// refusal. It needs the discovery class (cheap (re)connect calls that a
// brownout never sheds); until that class exists the test is skipped.
func TestVersionsSurvivesBrownout(t *testing.T) {
	if _, err := matrix.ParseClass("discovery"); err != nil {
		t.Skip("no discovery class yet: /versions is still `other`")
	}
	g := newTestGate(t, DefaultConfig(), Options{})
	now := time.Now()
	for _, p := range []string{"sheddable", "normal"} {
		if err := g.SetToggle(limiter.Toggle{Target: "*", Priority: p, Mode: limiter.ModeShed,
			Reason: "brownout", Since: now, Until: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	h := g.Middleware(okHandler())
	for _, tok := range []string{"", "tok"} {
		if rec := serveReq(h, "GET", "/_matrix/client/versions", tok); rec.Code != http.StatusOK {
			t.Errorf("/versions (token %q) under a normal brownout: %d %s", tok, rec.Code, rec.Body)
		}
	}
	if rec := serveReq(h, "GET", statePath, "tok"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("the brownout is not in force: room state got %d", rec.Code)
	}
}
