package gate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mxgate/mxgate/herd"
	"github.com/mxgate/mxgate/internal/testkit"
	"github.com/mxgate/mxgate/matrix"
)

func TestAnswerTimesTellASlowClass(t *testing.T) {
	var a answerTimes
	if a.slow(matrix.History) {
		t.Fatal("a class with no answers yet is slow")
	}
	a.observe(matrix.History, 300*time.Millisecond) // the first answer sets the average
	if !a.slow(matrix.History) || a.slow(matrix.RoomState) {
		t.Fatal("one 300 ms answer: want history slow, room_state not")
	}
	for range 20 {
		a.observe(matrix.History, 5*time.Millisecond)
	}
	if a.slow(matrix.History) {
		t.Fatalf("after 20 answers of 5 ms the average is %v", time.Duration(a[matrix.History].Load()))
	}
}

// A coalescing leader of a fast class fetches on its client's own request:
// the client leaving ends the upstream request at once. Once the class is
// slow (or a herd is on) the fetch is detached and outlives the client by
// the orphan grace, for a client that asks again.
func TestCoalescingLeaderDetachesOnlyWhereClientsMayRetry(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	g := newTestGate(t, DefaultConfig(), Options{})
	for _, tc := range []struct {
		name    string
		prepare func()
		want    herd.Lead
	}{
		{"fast class", func() {}, herd.LeadAttached},
		{"slow class", func() { g.answers.observe(matrix.History, time.Second) }, herd.LeadDetached},
	} {
		tc.prepare()
		if got := g.coalescingLead(matrix.History); got != tc.want {
			t.Fatalf("%s: lead %d, want %d", tc.name, got, tc.want)
		}
		inNext, fetchEnded := make(chan struct{}), make(chan time.Time, 1)
		next := func(w http.ResponseWriter, r *http.Request) error {
			close(inNext)
			<-r.Context().Done()
			fetchEnded <- time.Now()
			return r.Context().Err()
		}
		ctx, leave := context.WithCancel(context.Background())
		req := httptest.NewRequest(http.MethodGet, historyPath, nil).WithContext(ctx)
		req.Header.Set("Authorization", "Bearer "+tc.name)
		served := make(chan struct{})
		go func() {
			defer close(served)
			_ = g.ServeNext(httptest.NewRecorder(), req, next)
		}()
		<-inNext
		left := time.Now()
		leave()
		ended := <-fetchEnded
		<-served
		after := ended.Sub(left)
		switch {
		case tc.want == herd.LeadAttached && after > coalesceOrphanGrace/2:
			t.Fatalf("%s: the fetch outlived its client by %v", tc.name, after)
		case tc.want == herd.LeadDetached && after < coalesceOrphanGrace:
			t.Fatalf("%s: the fetch ended %v after its client left, before the %v grace", tc.name, after, coalesceOrphanGrace)
		}
	}
}
