package gate

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"
	"github.com/mxgate/mxgate/matrix"
)

const historyPath = "/_matrix/client/v3/rooms/%21r%3Ax/messages"

// adaptiveConfig is DefaultConfig with adaptive limits on classes, ceilings
// of 64 and queues deep enough that closed-loop clients are never shed.
func adaptiveConfig(classes ...matrix.Class) Config {
	cfg := DefaultConfig()
	cfg.MaxInflight = 0
	cfg.Herd.MinUsers = 0
	for _, c := range classes {
		cfg.Classes[c].Adaptive = true
		cfg.Classes[c].MaxInflight = 64
		cfg.Classes[c].Queue = 1000
		cfg.Classes[c].QueueTimeout = time.Minute
		cfg.Classes[c].Coalesce = 0
		cfg.Classes[c].Rate = 0
	}
	return cfg
}

// The gate feeds an adaptive class's limit from its requests' time to
// first byte, in virtual time: the upstream "takes" 5ms by advancing the
// gate's clock before it answers and 20ms more while its body streams, so
// the baseline is the 5ms to the header, not the 25ms to the end. A class
// without adaptive keeps its configured cap. (The convergence itself is
// limiter's: TestAdmissionAdaptiveCapFollowsUpstreamCapacity.)
func TestAdaptiveLimitFedFromTimeToFirstByte(t *testing.T) {
	clock := testkit.NewClock(time.Unix(1_700_000_000, 0))
	g := newTestGate(t, adaptiveConfig(matrix.History), Options{Now: clock.Now})
	next := func(w http.ResponseWriter, r *http.Request) error {
		clock.Advance(5 * time.Millisecond)
		w.WriteHeader(http.StatusOK)
		clock.Advance(20 * time.Millisecond)
		_, err := w.Write([]byte("{}"))
		return err
	}
	for range 200 {
		if err := g.ServeNext(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, historyPath, nil), next); err != nil {
			t.Fatal(err)
		}
	}
	st := g.Status(clock.Now()).Classes[matrix.History]
	if !st.Adaptive || st.AdaptiveLimit == 0 || st.BaselineRTT != "5ms" {
		t.Fatalf("status does not show the adaptive limit learnt from time to first byte: %+v", st)
	}
	if other := g.Status(clock.Now()).Classes[matrix.Other]; other.Adaptive || other.Cap != DefaultConfig().Classes[matrix.Other].MaxInflight {
		t.Fatalf("a class without adaptive changed: %+v", other)
	}
}

// While a herd is on, round trips do not feed the adaptive limits: the
// herd's load slows every class, and a gradient learning from that would
// cut history, whose requests are not the cause, until they time out in the
// queue. History answering 20 times slower during a herd leaves its limit
// as it was; the same slowdown once the herd has ended lowers it.
func TestAdaptiveLimitsHoldDuringAHerd(t *testing.T) {
	clock := testkit.NewClock(time.Unix(1_700_000_000, 0))
	cfg := adaptiveConfig(matrix.History)
	cfg.Herd.MinUsers, cfg.Herd.Window = 50, 10*time.Second
	g := newTestGate(t, cfg, Options{Now: clock.Now})
	history := func(n int, ttfb time.Duration) int {
		next := func(w http.ResponseWriter, r *http.Request) error {
			clock.Advance(ttfb)
			w.WriteHeader(http.StatusOK)
			_, err := w.Write([]byte("{}"))
			return err
		}
		for range n {
			if err := g.ServeNext(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, historyPath, nil), next); err != nil {
				t.Fatal(err)
			}
		}
		return g.Status(clock.Now()).Classes[matrix.History].AdaptiveLimit
	}
	learnt := history(300, 5*time.Millisecond)

	h := g.Middleware(okHandler())
	signIn(h, "herd-", 60)
	for i := range 60 {
		serveReq(h, "GET", "/_matrix/client/v3/rooms/%21big%3Ax/state", fmt.Sprint("herd-", i))
	}
	if hs := g.Status(clock.Now()).Herds; len(hs) != 1 {
		t.Fatalf("no herd declared: %+v", hs)
	}
	if during := history(300, 100*time.Millisecond); during != learnt {
		t.Fatalf("history's adaptive limit went from %d to %d during a herd, want it held", learnt, during)
	}

	clock.Advance(11 * time.Second) // the herd's window passes without it
	g.updateHerdGauges(clock.Now())
	if after := history(300, 100*time.Millisecond); after >= learnt {
		t.Fatalf("history's adaptive limit %d after the herd under a 20x slowdown, want below %d: sampling did not resume", after, learnt)
	}
}
