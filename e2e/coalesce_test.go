package e2e

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/mxgate/mxgate/herd"
)

// coalesceCopies is how many identical /state requests one user sends at once.
const coalesceCopies = 20

// TestCoalescing sends coalesceCopies identical /state
// requests with one access token at once through the tight gateway (whose
// room_state keeps the built-in coalesce window). Every copy must get the
// same 200 answer, the homeserver must see fewer requests than were sent, and the
// coalesced outcome must show in mxgate's metrics.
func TestCoalescing(t *testing.T) {
	forEachHomeserver(t, testCoalescing)
}

func testCoalescing(t *testing.T, s *hsEnv) {
	checkGoroutineLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	owner := newClient(t, s.hs.url(), newTransport(t))
	if _, err := register(ctx, owner, "tabs-"+uniqueSuffix(), "tabs-password"); err != nil {
		t.Fatal(err)
	}
	created, err := owner.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "tabs"})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	before, err := scrapeMetrics(ctx, s.tight.admin)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	s.probe.reset()

	rec := newRecorder(newTransport(t), true)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range coalesceCopies {
		cli := newClient(t, s.tight.url, rec)
		cli.SetCredentials(owner.UserID, owner.AccessToken)
		cli.DefaultHTTPRetries = 10 // in case a copy is shed before it can join the leader
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, _ = cli.State(ctx, created.RoomID) // outcomes are checked on the recorded exchanges
		}()
	}
	close(start)
	wg.Wait()

	// A copy answered from another's fetch must get that fetch's answer,
	// byte for byte. A copy shed and retried after the fetch ended fetches
	// for itself, and Synapse's answer then differs (each event's age).
	var fetched, shared [][]byte
	for _, e := range rec.take() {
		switch {
		case e.status == http.StatusOK && e.header.Get(herd.CoalescedHeader) == "1":
			shared = append(shared, e.body)
		case e.status == http.StatusOK:
			fetched = append(fetched, e.body)
		case e.status == http.StatusTooManyRequests: // retried by mautrix
		default:
			t.Errorf("a copy got status %d: %s", e.status, e.body)
		}
	}
	if len(fetched)+len(shared) != coalesceCopies {
		t.Fatalf("%d of %d copies got a 200", len(fetched)+len(shared), coalesceCopies)
	}
	if len(shared) == 0 {
		t.Errorf("no copy's answer was marked %s", herd.CoalescedHeader)
	}
	for _, a := range shared {
		if !slices.ContainsFunc(fetched, func(f []byte) bool { return bytes.Equal(f, a) }) {
			t.Fatalf("a coalesced copy got an answer no fetch got:\n%s\nfetched: %q", a, fetched)
		}
	}
	after, err := scrapeMetrics(ctx, s.tight.admin)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	m := map[string]string{"class": "room_state", "outcome": "coalesced"}
	coalesced := metricSum(after, "mxgate_requests_total", m) - metricSum(before, "mxgate_requests_total", m)
	upstream := s.probe.totalOf("room_state")
	t.Logf("%d identical requests: %d reached %s, %v counted as coalesced", coalesceCopies, upstream, s.name, coalesced)
	if upstream >= coalesceCopies {
		t.Errorf("%s saw %d of %d identical /state requests; coalescing shared none", s.name, upstream, coalesceCopies)
	}
	if coalesced == 0 {
		t.Errorf("mxgate_requests_total{class=\"room_state\",outcome=\"coalesced\"} did not grow")
	}
}
