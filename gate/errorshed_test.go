package gate

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// An upstream answering 500 trips the 5xx signal: sheddable classes get the
// Matrix 429 with the reason (and show it in status), critical and normal
// ones still pass; once the failures leave the window it resets.
func TestErrorShedShedsSheddableClassesUntilRecovery(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Herd.MinUsers = 0
	cfg.Classes[matrix.History].Coalesce = 0
	cfg.ErrorShed = ErrorShedConfig{Enabled: true, Threshold: 0.5, MinSamples: 20, Window: time.Second}
	g := newTestGate(t, cfg, Options{})
	var failing atomic.Bool
	failing.Store(true)
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Write([]byte(`{}`))
	}))

	if rec := serveReq(h, "POST", searchURL, "tok"); rec.Code != http.StatusInternalServerError {
		t.Fatalf("search before the tripwire: %d", rec.Code)
	}
	for range 25 {
		serveReq(h, "GET", historyPath, "tok")
	}
	body := limitExceeded(t, serveReq(h, "POST", searchURL, "tok"))
	if !strings.Contains(body.Error, "upstream failing: 100% 5xx") {
		t.Fatalf("reason %q", body.Error)
	}
	if rec := serveReq(h, "PUT", sendPath, "tok"); rec.Code == http.StatusTooManyRequests {
		t.Fatal("critical send shed by the 5xx signal")
	}
	if rec := serveReq(h, "GET", historyPath, "tok"); rec.Code == http.StatusTooManyRequests {
		t.Fatal("normal history shed by the 5xx signal")
	}
	st := g.Status(time.Now())
	if search := st.Classes[matrix.Search]; search.Mode != limiter.ModeShed || !strings.Contains(search.Reason, "upstream failing") {
		t.Fatalf("search status %+v", search)
	}
	if !st.ErrorShed.Shedding || len(st.Toggles) != 0 {
		t.Fatalf("error shed status %+v, toggles %+v (it must not be a stored toggle)", st.ErrorShed, st.Toggles)
	}

	failing.Store(false)
	testkit.Eventually(t, "the 5xx signal to reset", func() bool {
		return serveReq(h, "POST", searchURL, "tok").Code == http.StatusOK
	})
	if g.Status(time.Now()).ErrorShed.Shedding {
		t.Fatal("status still shedding")
	}
}

// An operator toggle on a class wins over the derived 5xx shedding, as
// over a brownout.
func TestErrorShedYieldsToOperatorToggle(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ErrorShed = ErrorShedConfig{Enabled: true, Threshold: 0.5, MinSamples: 1, Window: time.Minute}
	g := newTestGate(t, cfg, Options{})
	now := time.Now()
	if err := g.SetToggle(limiter.Toggle{Target: "search", Mode: limiter.ModeNormal, Reason: "keep search",
		Since: now, Until: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	g.recordErrorShed(attempt{err: errors.New("no answer")}, now)
	if !g.errShed.tripped.Load() {
		t.Fatal("one failure with min_samples 1 did not trip")
	}
	st := g.Status(now)
	if st.Classes[matrix.Search].Mode != limiter.ModeNormal || st.Classes[matrix.Ephemeral].Mode != limiter.ModeShed {
		t.Fatalf("search %v, ephemeral %v", st.Classes[matrix.Search].Mode, st.Classes[matrix.Ephemeral].Mode)
	}
	rec := httptest.NewRecorder()
	g.Middleware(okHandler()).ServeHTTP(rec, httptest.NewRequest("POST", searchURL, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("operator-kept search: %d", rec.Code)
	}
}
