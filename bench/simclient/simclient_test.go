package simclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// serverLog is a capped, locked list of what a test server saw.
type serverLog struct {
	mu   sync.Mutex
	seen []string
	at   []time.Time
}

func (l *serverLog) add(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) < 1000 {
		l.seen = append(l.seen, s)
		l.at = append(l.at, time.Now())
	}
	return len(l.seen)
}

func (l *serverLog) snapshot() ([]string, []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.seen...), append([]time.Time(nil), l.at...)
}

func newTestClient(t *testing.T, h http.Handler) (*Client, *Recorder) {
	t.Helper()
	before := runtime.NumGoroutine()
	srv := httptest.NewServer(h)
	tr := &http.Transport{}
	rec := NewRecorder(100)
	c := New(1, 42, "test", Options{Base: srv.URL, HTTP: &http.Client{Transport: tr}, Recorder: rec, Scale: 100})
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before+1 {
			if time.Now().After(deadline) {
				t.Fatalf("goroutine leak: %d before, %d after", before, runtime.NumGoroutine())
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return c, rec
}

func TestHonoursRetryAfterMsThenSucceeds(t *testing.T) {
	var l serverLog
	c, rec := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.add(r.URL.Path) == 1 {
			matrix.WriteLimitExceeded(w, "slow down", 30*time.Millisecond) // wall-clock
			return
		}
		w.Write([]byte("{}"))
	}))
	if !c.act(context.Background(), c.rand(9), "GET", "/_matrix/client/v3/rooms/!r:x/messages", nil) {
		t.Fatal("action failed")
	}
	_, at := l.snapshot()
	if len(at) != 2 || at[1].Sub(at[0]) < 30*time.Millisecond {
		t.Fatalf("retry did not wait the 30 ms it was told: %v", at)
	}
	recs, _ := rec.Records()
	if len(recs) != 2 || recs[0].Status != 429 || !recs[1].OK() || recs[1].Class != matrix.History {
		t.Fatalf("unexpected records %+v", recs)
	}
}

func TestRetryAfterReadsBodyThenHeader(t *testing.T) {
	if d := FamilyGeneric.retryAfter("9", matrix.LimitExceededBody("x", 1500*time.Millisecond)); d != 1500*time.Millisecond {
		t.Fatalf("body: got %v", d)
	}
	if d := FamilyGeneric.retryAfter("4", []byte(`{"errcode":"M_LIMIT_EXCEEDED"}`)); d != 4*time.Second {
		t.Fatalf("header: got %v", d)
	}
	if d := FamilyGeneric.retryAfter("", nil); d != 0 {
		t.Fatalf("none: got %v", d)
	}
}

// Each family reads what its SDK reads from a 429.
func TestFamiliesReadTheir429(t *testing.T) {
	limit := matrix.LimitExceededBody("x", 1500*time.Millisecond)
	plain := []byte(`{"errcode":"M_UNKNOWN"}`)
	for _, tc := range []struct {
		f      Family
		header string
		body   []byte
		want   time.Duration
	}{
		{FamilyJSSDK, "9", limit, 9 * time.Second},
		{FamilyJSSDK, "", limit, 1500 * time.Millisecond},
		{FamilyElementX, "9", limit, 9 * time.Second},
		{FamilyElementX, "9", plain, 0}, // only with M_LIMIT_EXCEEDED
		{FamilyElementX, "Wed, 21 Oct 2015 07:28:00 GMT", limit, 1500 * time.Millisecond},
		{FamilyElementAndroid, "9", limit, 1500 * time.Millisecond},
		{FamilyElementAndroid, "9", plain, 0},
		{FamilyIOS, "9", limit, 1500 * time.Millisecond},
		{FamilyMautrix, "9", limit, 9 * time.Second},
		{FamilyMautrix, "", limit, 0},
	} {
		if got := tc.f.retryAfter(tc.header, tc.body); got != tc.want {
			t.Errorf("%s, Retry-After %q, body %s: %v, want %v", tc.f, tc.header, tc.body, got, tc.want)
		}
	}
}

func TestGivesUpAndRetriesBounded(t *testing.T) {
	var l serverLog
	release := make(chan struct{})
	c, rec := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.add(r.URL.Path)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer close(release)
	c.o.MaxAttempts = 3
	if c.act(context.Background(), c.rand(9), "GET", "/_matrix/client/v3/rooms/!r:x/state", nil) {
		t.Fatal("action against a hanging server succeeded")
	}
	recs, _ := rec.Records()
	if len(recs) != 3 {
		t.Fatalf("want 3 attempts, got %d", len(recs))
	}
	for _, r := range recs {
		if !r.GaveUp || r.Status != 0 || r.End-r.Start < c.real(c.o.GiveUpMin) {
			t.Fatalf("want a give-up after the client timeout, got %+v", r)
		}
	}
}

func TestSyncLoopLongPollsWithSinceAndKeepsAliveAfterError(t *testing.T) {
	var l serverLog
	ctx, cancel := context.WithCancel(context.Background())
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := l.add(r.URL.RequestURI() + " " + r.Header.Get("Authorization"))
		switch {
		case n == 2:
			w.WriteHeader(http.StatusInternalServerError)
		case n >= 5:
			cancel()
			fallthrough
		default:
			w.Write([]byte(`{"next_batch":"s7"}`))
		}
	}))
	done := make(chan struct{})
	go func() { c.SyncLoop(ctx, ""); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("sync loop did not stop with its context")
	}
	seen, _ := l.snapshot()
	want := []string{
		"/_matrix/client/v3/sync",
		"/_matrix/client/v3/sync?since=s7&timeout=30000",
		"/_matrix/client/versions",
		"/_matrix/client/v3/sync?since=s7&timeout=30000",
	}
	for i, w := range want {
		if got, _, _ := strings.Cut(seen[i], " "); got != w {
			t.Fatalf("request %d: got %q, want %q (all: %v)", i, got, w, seen)
		}
		if !strings.HasSuffix(seen[i], " Bearer "+c.token) {
			t.Fatalf("request %d carries no bearer token", i)
		}
	}
}

func TestClientsAreDeterministicAndDistinct(t *testing.T) {
	o := Options{Recorder: NewRecorder(1)}
	a, b, other := New(3, 7, "g", o), New(3, 7, "g", o), New(4, 7, "g", o)
	if a.giveUp != b.giveUp || a.rand(1).Uint64() != b.rand(1).Uint64() {
		t.Fatal("same seed and id must behave the same")
	}
	if a.token == other.token || a.rand(1).Uint64() == other.rand(1).Uint64() {
		t.Fatal("different clients must have their own token and random stream")
	}
	if a.giveUp < 30*time.Second || a.giveUp > 60*time.Second {
		t.Fatalf("give-up %v outside the default 30-60 s", a.giveUp)
	}
}

func TestRecorderIsCapped(t *testing.T) {
	r := NewRecorder(2)
	for range 5 {
		r.add(Record{})
	}
	recs, dropped := r.Records()
	if len(recs) != 2 || dropped != 3 {
		t.Fatalf("got %d records, %d dropped", len(recs), dropped)
	}
}

// A js-sdk client's initial sync ignores a 429's long Retry-After: it
// probes /versions 2-7 s (model time) later, and while /versions is refused
// again after 5-10 s, then retries /sync.
func TestJSSDKInitialSyncProbesVersionsInsteadOfRetryAfter(t *testing.T) {
	var l serverLog
	var syncs, probes int
	var mu sync.Mutex
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.add(r.URL.Path)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/versions"):
			if probes++; probes == 1 {
				matrix.WriteLimitExceeded(w, "shed", 60*time.Second)
				return
			}
			w.Write([]byte(`{"versions":["v1.11"]}`))
		case syncs == 0:
			syncs++
			matrix.WriteLimitExceeded(w, "shed", 60*time.Second)
		default:
			w.Write([]byte(`{"next_batch":"s1"}`))
		}
	}))
	c.o.Family = FamilyJSSDK
	if !c.InitialSync(context.Background(), 0) {
		t.Fatal("initial sync failed")
	}
	seen, at := l.snapshot()
	want := []string{"/_matrix/client/v3/sync", "/_matrix/client/versions", "/_matrix/client/versions", "/_matrix/client/v3/sync"}
	if strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Fatalf("requests %v, want %v", seen, want)
	}
	// Scale 100: 2-7 s is 20-70 ms, 5-10 s is 50-100 ms; the 60 s asked for would be 600 ms.
	gaps := []time.Duration{at[1].Sub(at[0]), at[2].Sub(at[1])}
	asked := 600 * time.Millisecond
	if gaps[0] < 20*time.Millisecond || gaps[0] >= asked || gaps[1] < 50*time.Millisecond || gaps[1] >= asked {
		t.Fatalf("gaps %v: want 2-7 s then 5-10 s of model time, not the 60 s asked for", gaps)
	}
}
