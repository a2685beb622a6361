package gate

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// noHerdPartShares is a fleet in which this gateway keeps every cap but has
// no part of any herd allowance.
type noHerdPartShares struct{}

func (noHerdPartShares) Share(cap int) int           { return cap }
func (noHerdPartShares) HerdShare(allowance int) int { return 0 }
func (noHerdPartShares) SharesVersion() uint64       { return 1 }

// On a gateway without a herd part, the herd's requests that queued before
// it was declared, refused when it is, carry the herd's wider Retry-After,
// as the herd requests refused at once do.
func TestRelanedRefusalsGetTheHerdRetryAfter(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Herd.MinUsers, cfg.Herd.Window = 3, 10*time.Second
	cfg.RetryAfterMin, cfg.RetryAfterMax = time.Second, 2*time.Second
	cfg.Herd.RetryAfterMin, cfg.Herd.RetryAfterMax = 100*time.Second, 200*time.Second
	cfg.Classes[matrix.RoomState].MaxInflight = 2
	cfg.Classes[matrix.RoomState].Queue = 10
	cfg.Classes[matrix.RoomState].Coalesce = 0
	g := newTestGate(t, cfg, Options{})
	g.fleet.shares = noHerdPartShares{}
	g.configureAdmission(g.cfg.Load())
	arrived := make(chan string, 16)
	release := make(chan struct{})
	h := g.Middleware(heldStateUpstream(arrived, release))
	signIn(h, "user-", 6)
	var wg sync.WaitGroup
	var mu sync.Mutex
	recs := map[int]*httptest.ResponseRecorder{}
	state := func(room string, user int) {
		wg.Go(func() {
			rec := serveReq(h, "GET", "/_matrix/client/v3/rooms/"+room+"/state", fmt.Sprint("user-", user))
			mu.Lock()
			recs[user] = rec
			mu.Unlock()
		})
	}
	queued := func(n int) { t.Helper(); roomStateQueued(t, g, n) }
	const big = "%21big%3Ax"
	state("%21a%3Ax", 4)
	state("%21b%3Ax", 5)
	nextArrival(t, arrived)
	nextArrival(t, arrived)
	state(big, 0)
	queued(1)
	state(big, 1)
	queued(2)
	state(big, 2) // declares the herd: Relane refuses users 0 and 1, user 2 is refused at once
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(recs)
		mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("herd requests not all answered: %d", n)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for user := range 3 {
		rec := recs[user]
		if rec.Code != http.StatusTooManyRequests {
			t.Fatalf("user %d: status %d, want 429", user, rec.Code)
		}
		if ra := rec.Header().Get("Retry-After"); ra == "1" || ra == "2" {
			t.Errorf("user %d (herd room, refused on a gateway without a herd part): Retry-After %s, the normal range, want the herd's 100-200", user, ra)
		}
	}
}
