package gate

import (
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
