package herd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"
)

func get(t *testing.T, client *http.Client, url, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Error(err)
		return nil, nil
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Error(err)
		return nil, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return resp, body
}

func TestHundredIdenticalRequestsReachUpstreamOnce(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{})
	release := make(chan struct{})
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"state":"big"}`)
	})
	front, client := newGateway(t, c, u, 0, time.Minute, false)

	const n = 100
	var wg sync.WaitGroup
	bodies := make([]string, n)
	coalesced := make([]string, n)
	for i := range n {
		wg.Go(func() {
			resp, body := get(t, client, front.URL+"/_matrix/client/v3/rooms/!r:x/state", "tok")
			if resp != nil {
				bodies[i], coalesced[i] = string(body), resp.Header.Get(CoalescedHeader)
			}
		})
	}
	// Barrier: the leader is at the upstream and the other 99 wait on it.
	testkit.Eventually(t, "99 waiters", func() bool { return u.hits.Load() == 1 && c.Waiting() == n-1 })
	close(release)
	wg.Wait()

	if got := u.hits.Load(); got != 1 {
		t.Fatalf("upstream saw %d requests, want 1", got)
	}
	marked := 0
	for i := range n {
		if bodies[i] != `{"state":"big"}` {
			t.Fatalf("client %d got %q", i, bodies[i])
		}
		if coalesced[i] == "1" {
			marked++
		}
	}
	if marked != n-1 {
		t.Fatalf("%d responses marked %s, want %d", marked, CoalescedHeader, n-1)
	}
	if groups, entries, used := c.Len(); groups != 0 || entries != 0 || used != 0 {
		t.Fatalf("after completion with ttl 0: groups=%d entries=%d bytes=%d, want all 0", groups, entries, used)
	}
}

func TestDistinctTokensNeverShareAnswers(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{})
	const n = 100
	var arrived atomic.Int64
	allArrived := make(chan struct{})
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		// Every token's request reaches the upstream concurrently: none of
		// them waited on another's group. (Bounded, so that a coalescer
		// wrongly merging tokens fails the test instead of hanging it.)
		if arrived.Add(1) == n {
			close(allArrived)
		}
		select {
		case <-allArrived:
		case <-time.After(10 * time.Second):
		}
		fmt.Fprintf(w, "answer-for-%s", strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	})
	front, client := newGateway(t, c, u, time.Minute, time.Minute, false)

	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tok := fmt.Sprintf("token-%03d", i)
			_, body := get(t, client, front.URL+"/_matrix/client/v3/rooms/!r:x/members", tok)
			if want := "answer-for-" + tok; string(body) != want {
				t.Errorf("client with %s got %q, want %q", tok, body, want)
			}
		})
	}
	wg.Wait()
	if got := u.hits.Load(); got != n {
		t.Fatalf("upstream saw %d requests, want %d", got, n)
	}
	// Repeats are answered from the cache, still each with its own answer.
	for i := range n {
		tok := fmt.Sprintf("token-%03d", i)
		resp, body := get(t, client, front.URL+"/_matrix/client/v3/rooms/!r:x/members", tok)
		if want := "answer-for-" + tok; string(body) != want || resp.Header.Get(CoalescedHeader) != "1" {
			t.Fatalf("cached repeat for %s: %q (coalesced=%q), want %q from cache", tok, body, resp.Header.Get(CoalescedHeader), want)
		}
	}
	if got := u.hits.Load(); got != n {
		t.Fatalf("upstream saw %d requests after cached repeats, want %d", got, n)
	}
}

// clientWriter is a leader's ResponseWriter whose client disconnects: once
// gone is closed, every write fails.
type clientWriter struct {
	*httptest.ResponseRecorder
	gone  chan struct{}
	wrote atomic.Int64 // bytes the client received, readable while it writes
}

func (w *clientWriter) Write(p []byte) (int, error) {
	select {
	case <-w.gone:
		return 0, errors.New("client went away")
	default:
		n, err := w.ResponseRecorder.Write(p)
		w.wrote.Add(int64(n))
		return n, err
	}
}

func TestLeaderDisconnectDoesNotFailWaiters(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{})
	firstHalfSent, rest := make(chan struct{}), make(chan struct{})
	var upstreamCtxErr error
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, strings.Repeat("a", 1000))
		w.(http.Flusher).Flush()
		close(firstHalfSent)
		<-rest
		fmt.Fprint(w, strings.Repeat("b", 1000))
		upstreamCtxErr = r.Context().Err()
	})
	key, _ := keyFor(httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/rooms/!r:x/state", nil), false)

	leaderCtx, disconnect := context.WithCancel(context.Background())
	leaderW := &clientWriter{ResponseRecorder: httptest.NewRecorder(), gone: make(chan struct{})}
	leaderDone := make(chan error, 1)
	go func() {
		r := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/rooms/!r:x/state", nil).WithContext(leaderCtx)
		outcome, err := c.Do(leaderW, r, key, LeadDetached, time.Minute, time.Minute, u.fetch)
		if outcome != Leader {
			err = fmt.Errorf("leader outcome %v", outcome)
		}
		leaderDone <- err
	}()
	<-firstHalfSent

	const waiters = 5
	results := make(chan *httptest.ResponseRecorder, waiters)
	for range waiters {
		go func() {
			w := httptest.NewRecorder()
			outcome, err := c.Do(w, httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/rooms/!r:x/state", nil), key, LeadDetached, time.Minute, time.Minute, u.fetch)
			if outcome != Coalesced || err != nil {
				t.Errorf("waiter: outcome %v err %v, want coalesced", outcome, err)
			}
			results <- w
		}()
	}
	testkit.Eventually(t, "waiters", func() bool { return c.Waiting() == waiters })
	// The upstream's flush does not mean the first half reached the
	// leader's client yet: wait for it, then the client leaves.
	testkit.Eventually(t, "the leader's first half", func() bool { return leaderW.wrote.Load() == 1000 })

	disconnect()
	close(leaderW.gone)
	close(rest)

	if err := <-leaderDone; err != nil {
		t.Fatalf("leader: %v", err)
	}
	want := strings.Repeat("a", 1000) + strings.Repeat("b", 1000)
	for range waiters {
		w := <-results
		if w.Code != http.StatusOK || w.Body.String() != want {
			t.Fatalf("waiter got %d with %d bytes, want 200 with the full %d", w.Code, w.Body.Len(), len(want))
		}
	}
	if upstreamCtxErr != nil {
		t.Fatalf("upstream request was canceled by the leader leaving: %v", upstreamCtxErr)
	}
	if leaderW.Body.String() != strings.Repeat("a", 1000) {
		t.Fatalf("leader's client got %d bytes before it left, want the first 1000", leaderW.Body.Len())
	}
	if got := u.hits.Load(); got != 1 {
		t.Fatalf("upstream saw %d requests, want 1", got)
	}
}

func TestUpstreamErrorReachesWaitersAndIsNotCached(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
	}{{"500", http.StatusInternalServerError}, {"429", http.StatusTooManyRequests}} {
		t.Run(tc.name, func(t *testing.T) {
			testkit.NoGoroutineLeak(t)
			c := NewCoalescer(CoalescerConfig{})
			release := make(chan struct{})
			u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				<-release
				w.WriteHeader(tc.status)
				fmt.Fprint(w, "boom")
			})
			front, client := newGateway(t, c, u, time.Hour, time.Minute, false)
			const n = 10
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					resp, body := get(t, client, front.URL+"/_matrix/client/v3/sync", "tok")
					if resp != nil && (resp.StatusCode != tc.status || string(body) != "boom") {
						t.Errorf("got %d %q, want %d boom", resp.StatusCode, body, tc.status)
					}
				})
			}
			testkit.Eventually(t, "waiters", func() bool { return u.hits.Load() == 1 && c.Waiting() == n-1 })
			close(release)
			wg.Wait()
			if got := u.hits.Load(); got != 1 {
				t.Fatalf("upstream saw %d, want 1", got)
			}
			if _, entries, _ := c.Len(); entries != 0 {
				t.Fatalf("%d error entries cached", entries)
			}
			get(t, client, front.URL+"/_matrix/client/v3/sync", "tok")
			if got := u.hits.Load(); got != 2 {
				t.Fatalf("repeat after the group: upstream saw %d, want 2 (errors are not cached)", got)
			}
		})
	}
}

func TestFetchErrorIsReturnedToEveryWaiter(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{})
	errDial := errors.New("dial upstream: connection refused")
	started, release := make(chan struct{}, 10), make(chan struct{})
	var calls sync.WaitGroup
	fetch := func(w http.ResponseWriter, r *http.Request) error {
		started <- struct{}{}
		<-release
		return errDial
	}
	key, _ := keyFor(httptest.NewRequest(http.MethodGet, "/x", nil), false)
	const n = 5
	errs := make(chan error, n)
	outcomes := make(chan Outcome, n)
	for range n {
		calls.Go(func() {
			o, err := c.Do(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, time.Hour, time.Minute, fetch)
			outcomes <- o
			errs <- err
		})
	}
	<-started
	testkit.Eventually(t, "waiters", func() bool { return c.Waiting() == n-1 })
	close(release)
	calls.Wait()
	counts := map[Outcome]int{}
	for range n {
		if err := <-errs; !errors.Is(err, errDial) {
			t.Fatalf("got error %v, want the fetch's", err)
		}
		counts[<-outcomes]++
	}
	if counts[Leader] != 1 || counts[Coalesced] != n-1 {
		t.Fatalf("outcomes %v, want 1 leader and %d coalesced", counts, n-1)
	}
	// Not cached: the next request fetches again.
	go func() { <-started }()
	if o, err := c.Do(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, time.Hour, time.Minute, fetch); o != Leader || !errors.Is(err, errDial) {
		t.Fatalf("repeat: %v %v, want a new leader", o, err)
	}
}

// streamingClient reads a response as it arrives.
func TestOversizedResponseStreamsToLeaderAndSendsWaitersUpstream(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	const (
		maxBody = 1 << 20
		total   = 50 << 20
		chunk   = 64 << 10
	)
	c := NewCoalescer(CoalescerConfig{MaxBodyBytes: maxBody})
	leaderAtUpstream, firstPart, rest := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var first sync.Once
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		isLeader := false
		first.Do(func() { isLeader = true })
		buf := bytes.Repeat([]byte("x"), chunk)
		if isLeader {
			close(leaderAtUpstream)
			<-firstPart
		}
		for written := 0; written < total; written += chunk {
			if _, err := w.Write(buf); err != nil {
				return
			}
			if isLeader && written == 2*maxBody {
				// Past the cap: the waiters must now be on their way
				// upstream, and the leader's client reading, while the
				// leader's upstream has not finished.
				w.(http.Flusher).Flush()
				<-rest
			}
		}
	})
	front, client := newGateway(t, c, u, time.Hour, time.Minute, false)
	// On failure, unblock the upstream so the servers can close.
	var releaseOnce, restOnce sync.Once
	releaseFirst := func() { releaseOnce.Do(func() { close(firstPart) }) }
	releaseRest := func() { restOnce.Do(func() { close(rest) }) }
	t.Cleanup(releaseFirst)
	t.Cleanup(releaseRest)

	type result struct {
		n   int64
		err error
	}
	leaderFirstBytes := make(chan struct{})
	leaderDone := make(chan result, 1)
	go func() {
		resp, err := client.Get(front.URL + "/_matrix/media/v3/download/x/y")
		if err != nil {
			leaderDone <- result{err: err}
			return
		}
		defer resp.Body.Close()
		if _, err := io.ReadFull(resp.Body, make([]byte, chunk)); err != nil {
			leaderDone <- result{err: err}
			return
		}
		close(leaderFirstBytes)
		n, err := io.Copy(io.Discard, resp.Body)
		leaderDone <- result{n: n + chunk, err: err}
	}()
	<-leaderAtUpstream

	// The waiters use the key the gateway computed for the leader.
	key, _ := keyFor(httptest.NewRequest(http.MethodGet, front.URL+"/_matrix/media/v3/download/x/y", nil), false)
	const waiters = 3
	waiterDone := make(chan result, waiters)
	for range waiters {
		go func() {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, front.URL+"/_matrix/media/v3/download/x/y", nil)
			o, err := c.Do(w, r, key, LeadDetached, time.Hour, time.Minute, u.fetch)
			if err == nil && o != Passthrough {
				err = fmt.Errorf("outcome %v, want passthrough", o)
			}
			waiterDone <- result{n: int64(w.Body.Len()), err: err}
		}()
	}
	testkit.Eventually(t, "waiters", func() bool { return c.Waiting() == waiters })
	releaseFirst()

	// Streaming: the leader's client has bytes while its upstream is held.
	// (Bounded: a buffering coalescer would never deliver them.)
	select {
	case <-leaderFirstBytes:
	case res := <-leaderDone:
		t.Fatalf("leader finished (%d bytes, %v) before its first bytes were seen", res.n, res.err)
	case <-time.After(30 * time.Second):
		t.Fatal("leader's client got no bytes while the upstream was still writing: response buffered")
	}
	for range waiters {
		res := <-waiterDone
		if res.err != nil || res.n != total {
			t.Fatalf("waiter: %d bytes, err %v; want its own full %d-byte fetch", res.n, res.err, total)
		}
	}
	if _, _, used := c.Len(); used > maxBody {
		t.Fatalf("coalescer holds %d bytes during the stream, cap %d", used, maxBody)
	}
	releaseRest()
	res := <-leaderDone
	if res.err != nil || res.n != total {
		t.Fatalf("leader: %d bytes, err %v; want %d", res.n, res.err, total)
	}
	if got := u.hits.Load(); got != 1+waiters {
		t.Fatalf("upstream saw %d, want %d (leader + each waiter)", got, 1+waiters)
	}
	if groups, entries, used := c.Len(); groups != 0 || entries != 0 || used != 0 {
		t.Fatalf("after: groups=%d entries=%d bytes=%d, want nothing kept", groups, entries, used)
	}
}

func TestUnshareableResponsesAreNotReused(t *testing.T) {
	for _, tc := range []struct {
		name        string
		header      string
		value       string
		allowNS     bool
		wantWaiters Outcome
	}{
		{"set-cookie", "Set-Cookie", "session=1", false, Passthrough},
		{"no-store", "Cache-Control", "no-cache, no-store, must-revalidate", false, Passthrough},
		{"vary-unkeyed", "Vary", "X-Device", false, Passthrough},
		{"set-cookie-even-when-no-store-allowed", "Set-Cookie", "session=1", true, Passthrough},
		// Synapse's JSON headers: shared among waiters only when allowed, never cached.
		{"no-store-allowed-in-flight", "Cache-Control", "no-cache, no-store, must-revalidate", true, Coalesced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testkit.NoGoroutineLeak(t)
			c := NewCoalescer(CoalescerConfig{ShareNoStoreInFlight: tc.allowNS})
			started, release := make(chan struct{}, 10), make(chan struct{})
			fetches := 0
			var mu sync.Mutex
			fetch := func(w http.ResponseWriter, r *http.Request) error {
				mu.Lock()
				fetches++
				leader := fetches == 1
				mu.Unlock()
				if leader {
					started <- struct{}{}
					<-release
				}
				w.Header().Set(tc.header, tc.value)
				fmt.Fprint(w, "answer")
				return nil
			}
			key, _ := keyFor(httptest.NewRequest(http.MethodGet, "/x", nil), false)
			do := func() (Outcome, *httptest.ResponseRecorder) {
				w := httptest.NewRecorder()
				o, err := c.Do(w, httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, time.Hour, time.Minute, fetch)
				if err != nil {
					t.Error(err)
				}
				return o, w
			}
			leaderDone := make(chan Outcome, 1)
			go func() { o, _ := do(); leaderDone <- o }()
			<-started
			waiterDone := make(chan Outcome, 1)
			go func() {
				o, w := do()
				if w.Body.String() != "answer" {
					t.Errorf("waiter body %q", w.Body.String())
				}
				waiterDone <- o
			}()
			testkit.Eventually(t, "waiter", func() bool { return c.Waiting() == 1 })
			close(release)
			if o := <-leaderDone; o != Leader {
				t.Fatalf("leader outcome %v", o)
			}
			if o := <-waiterDone; o != tc.wantWaiters {
				t.Fatalf("waiter outcome %v, want %v", o, tc.wantWaiters)
			}
			if o, _ := do(); o != Leader {
				t.Fatalf("repeat outcome %v, want leader (never cached)", o)
			}
		})
	}
}

func TestSharedKeySharesAcrossTokens(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{})
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "thumbnail") })
	front, client := newGateway(t, c, u, time.Hour, time.Minute, true)
	for i := range 5 {
		_, body := get(t, client, front.URL+"/_matrix/media/v3/thumbnail/x/y?width=32", fmt.Sprintf("tok%d", i))
		if string(body) != "thumbnail" {
			t.Fatalf("got %q", body)
		}
	}
	if got := u.hits.Load(); got != 1 {
		t.Fatalf("upstream saw %d, want 1 for a shared key", got)
	}
}

func TestPrivateResponseNotSharedAcrossTokens(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{})
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=60")
		fmt.Fprint(w, "mine")
	})
	front, client := newGateway(t, c, u, time.Hour, time.Minute, true)
	get(t, client, front.URL+"/_matrix/client/versions", "a")
	get(t, client, front.URL+"/_matrix/client/versions", "b")
	if got := u.hits.Load(); got != 2 {
		t.Fatalf("upstream saw %d, want 2: private answers are not shared", got)
	}
}

func TestCompletionCacheExpiresAfterTTL(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{})
	now := time.Unix(1_700_000_000, 0)
	c.now = func() time.Time { return now }
	fetches := 0
	fetch := func(w http.ResponseWriter, r *http.Request) error {
		fetches++
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		fmt.Fprintf(w, `{"n":%d}`, fetches)
		return nil
	}
	key, _ := keyFor(httptest.NewRequest(http.MethodGet, "/x", nil), false)
	do := func() (Outcome, *httptest.ResponseRecorder) {
		w := httptest.NewRecorder()
		o, err := c.Do(w, httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, 10*time.Second, time.Minute, fetch)
		if err != nil {
			t.Fatal(err)
		}
		return o, w
	}
	if o, w := do(); o != Leader || w.Header().Get(CoalescedHeader) != "" {
		t.Fatalf("first: %v, coalesced header %q", o, w.Header().Get(CoalescedHeader))
	}
	now = now.Add(9 * time.Second)
	o, w := do()
	if o != Cached || w.Body.String() != `{"n":1}` || w.Header().Get(CoalescedHeader) != "1" {
		t.Fatalf("within ttl: %v %q %q, want cached n=1 marked", o, w.Body.String(), w.Header().Get(CoalescedHeader))
	}
	if w.Header().Get("Content-Length") != "7" || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("replayed headers %v", w.Header())
	}
	for _, h := range []string{"Keep-Alive", "Connection", "X-Hop"} {
		if w.Header().Get(h) != "" {
			t.Fatalf("hop-by-hop header %s replayed", h)
		}
	}
	now = now.Add(2 * time.Second)
	if o, w := do(); o != Leader || w.Body.String() != `{"n":2}` {
		t.Fatalf("after ttl: %v %q, want a new fetch", o, w.Body.String())
	}
}

func TestHEADReplaysHeadersOnly(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{})
	fetch := func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Length", "12345")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	key, _ := keyFor(httptest.NewRequest(http.MethodHead, "/m", nil), true)
	for i, want := range []Outcome{Leader, Cached} {
		w := httptest.NewRecorder()
		o, err := c.Do(w, httptest.NewRequest(http.MethodHead, "/m", nil), key, LeadDetached, time.Hour, time.Minute, fetch)
		if err != nil || o != want {
			t.Fatalf("request %d: %v %v, want %v", i, o, err, want)
		}
		if w.Header().Get("Content-Length") != "12345" || w.Body.Len() != 0 {
			t.Fatalf("request %d: Content-Length %q, body %d bytes", i, w.Header().Get("Content-Length"), w.Body.Len())
		}
	}
}

func TestCacheByteBudgetAndEntryCap(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	// Three 3 KiB answers with their headers and bookkeeping (under 1 KiB
	// each) fit, four do not.
	const budget = 12 << 10
	c := NewCoalescer(CoalescerConfig{CacheBytes: budget, MaxEntries: 5})
	body := strings.Repeat("s", 3<<10)
	fetches := map[string]int{}
	fetch := func(w http.ResponseWriter, r *http.Request) error {
		fetches[r.URL.Path]++
		fmt.Fprint(w, body)
		return nil
	}
	do := func(path string) Outcome {
		key, _ := keyFor(httptest.NewRequest(http.MethodGet, path, nil), false)
		o, err := c.Do(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil), key, LeadDetached, time.Hour, time.Minute, fetch)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	for i := range 10 {
		do(fmt.Sprintf("/r%d", i))
		if _, entries, used := c.Len(); used > budget || entries > 5 {
			t.Fatalf("after %d responses: %d entries, %d bytes; budget %d bytes, 5 entries", i+1, entries, used, budget)
		}
	}
	if _, entries, _ := c.Len(); entries != 3 {
		t.Fatalf("%d entries of 3 KiB in a 12 KiB budget, want 3", entries)
	}
	if o := do("/r9"); o != Cached {
		t.Fatalf("newest entry: %v, want cached", o)
	}
	if o := do("/r0"); o != Leader {
		t.Fatalf("oldest entry: %v, want evicted (leader)", o)
	}

	// A response larger than the whole budget is served but not kept.
	c2 := NewCoalescer(CoalescerConfig{CacheBytes: 1 << 10})
	key, _ := keyFor(httptest.NewRequest(http.MethodGet, "/big", nil), false)
	w := httptest.NewRecorder()
	if o, _ := c2.Do(w, httptest.NewRequest(http.MethodGet, "/big", nil), key, LeadDetached, time.Hour, time.Minute, fetch); o != Leader || w.Body.Len() != len(body) {
		t.Fatalf("over-budget response: %v, %d bytes", o, w.Body.Len())
	}
	if _, entries, used := c2.Len(); entries != 0 || used != 0 {
		t.Fatalf("over-budget response kept: %d entries %d bytes", entries, used)
	}
}

func TestFullCoalescerPassesThrough(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{MaxEntries: 1})
	started, release := make(chan struct{}), make(chan struct{})
	blocking := func(w http.ResponseWriter, r *http.Request) error {
		close(started)
		<-release
		return nil
	}
	k1, _ := keyFor(httptest.NewRequest(http.MethodGet, "/a", nil), false)
	k2, _ := keyFor(httptest.NewRequest(http.MethodGet, "/b", nil), false)
	done := make(chan Outcome)
	go func() {
		o, _ := c.Do(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/a", nil), k1, LeadDetached, 0, time.Minute, blocking)
		done <- o
	}()
	<-started
	o, _ := c.Do(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/b", nil), k2, LeadDetached, 0, time.Minute,
		func(w http.ResponseWriter, r *http.Request) error { return nil })
	if o != Passthrough {
		t.Fatalf("with every slot in flight: %v, want passthrough", o)
	}
	close(release)
	if o := <-done; o != Leader {
		t.Fatalf("leader: %v", o)
	}
}

func TestWaiterDeadlineAndCancel(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{})
	started, release := make(chan struct{}), make(chan struct{})
	fetch := func(w http.ResponseWriter, r *http.Request) error {
		close(started)
		<-release
		fmt.Fprint(w, "late")
		return nil
	}
	key, _ := keyFor(httptest.NewRequest(http.MethodGet, "/x", nil), false)
	leaderDone := make(chan struct{})
	go func() {
		defer close(leaderDone)
		_, _ = c.Do(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, 0, time.Minute, fetch)
	}()
	<-started

	w := httptest.NewRecorder()
	o, err := c.Do(w, httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, 0, 20*time.Millisecond, fetch)
	if o != Abandoned || !errors.Is(err, ErrWaitTimeout) || w.Body.Len() != 0 {
		t.Fatalf("deadline: %v %v, %d bytes written; want abandoned, ErrWaitTimeout, nothing written", o, err, w.Body.Len())
	}
	ctx, cancel := context.WithCancel(context.Background())
	canceled := make(chan error, 1)
	go func() {
		_, err := c.Do(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(ctx), key, LeadDetached, 0, time.Hour, fetch)
		canceled <- err
	}()
	testkit.Eventually(t, "waiter", func() bool { return c.Waiting() == 1 })
	cancel()
	if err := <-canceled; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled waiter: %v", err)
	}
	if c.Waiting() != 0 {
		t.Fatalf("%d waiters left", c.Waiting())
	}
	close(release)
	<-leaderDone
}

// A leader whose fetch panics (a proxy's abort when the upstream breaks off
// mid-body) hands the group to its waiters: one of them leads a fetch of
// its own.
func TestLeaderPanicHandsTheGroupToAWaiter(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{})
	started, release := make(chan struct{}), make(chan struct{})
	key, _ := keyFor(httptest.NewRequest(http.MethodGet, "/x", nil), false)
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		_, _ = c.Do(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, time.Hour, time.Minute,
			func(w http.ResponseWriter, r *http.Request) error {
				fmt.Fprint(w, "partial")
				close(started)
				<-release
				panic(http.ErrAbortHandler)
			})
	}()
	<-started
	waiter := make(chan Outcome, 1)
	go func() {
		w := httptest.NewRecorder()
		o, _ := c.Do(w, httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, time.Hour, time.Minute,
			func(w http.ResponseWriter, r *http.Request) error { fmt.Fprint(w, "own"); return nil })
		if w.Body.String() != "own" {
			t.Errorf("waiter body %q", w.Body.String())
		}
		waiter <- o
	}()
	testkit.Eventually(t, "waiter", func() bool { return c.Waiting() == 1 })
	close(release)
	if p := <-panicked; p != http.ErrAbortHandler {
		t.Fatalf("leader's panic %v not propagated", p)
	}
	if o := <-waiter; o != Leader {
		t.Fatalf("waiter after leader panic: %v, want it to lead", o)
	}
	// What is kept is the new leader's complete answer, never the broken one.
	w := httptest.NewRecorder()
	o, _ := c.Do(w, httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, time.Hour, time.Minute,
		func(http.ResponseWriter, *http.Request) error { t.Error("fetched again"); return nil })
	if groups, _, _ := c.Len(); o != Cached || w.Body.String() != "own" || groups != 0 {
		t.Fatalf("after the panic: %v %q, %d groups; want the new leader's cached answer", o, w.Body.String(), groups)
	}
}

// A lone leader's uncacheable answer is streamed, not recorded: nothing is
// held for it, and the group closes at its headers, so an identical request
// arriving while the body streams leads a fetch of its own instead of
// waiting for a copy nobody made.
func TestLoneLeaderOfUncacheableAnswerRecordsNothing(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{ShareNoStoreInFlight: true})
	headersSent, finish := make(chan struct{}), make(chan struct{})
	var fetches atomic.Int32
	fetch := func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
		w.Header().Set("Content-Length", "12")
		if fetches.Add(1) == 1 {
			w.WriteHeader(http.StatusOK)
			close(headersSent)
			<-finish
		}
		fmt.Fprint(w, "answer-bytes")
		return nil
	}
	key, _ := keyFor(httptest.NewRequest(http.MethodGet, "/x", nil), false)
	leader := make(chan Outcome, 1)
	go func() {
		o, _ := c.Do(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, time.Hour, time.Minute, fetch)
		leader <- o
	}()
	<-headersSent
	if groups, _, held := c.Len(); groups != 0 || held != 0 {
		t.Errorf("while the lone leader streams: %d groups, %d bytes held; want none", groups, held)
	}
	w := httptest.NewRecorder()
	if o, err := c.Do(w, httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, time.Hour, time.Minute, fetch); o != Leader || err != nil || w.Body.String() != "answer-bytes" {
		t.Errorf("a request during the stream: %v, %v, %q; want its own fetch", o, err, w.Body.String())
	}
	close(finish)
	if o := <-leader; o != Leader {
		t.Errorf("leader outcome %v", o)
	}
	if groups, entries, held := c.Len(); groups != 0 || entries != 0 || held != 0 {
		t.Errorf("after: %d groups, %d entries, %d bytes; want nothing kept", groups, entries, held)
	}
}

func TestOuterHeadersStayWithTheLeader(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{})
	started, release := make(chan struct{}), make(chan struct{})
	fetch := func(w http.ResponseWriter, r *http.Request) error {
		if got := w.Header().Get("X-Outer"); got != "" {
			t.Errorf("fetch sees the outer middleware's X-Outer %q", got)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Answer", "upstream")
		close(started)
		<-release
		fmt.Fprint(w, `{"ok":true}`)
		return nil
	}
	key, _ := keyFor(httptest.NewRequest(http.MethodGet, "/x", nil), false)
	leaderW := httptest.NewRecorder()
	leaderW.Header().Set("X-Outer", "leader's own")
	leaderW.Header().Set("Content-Type", "text/plain") // fetch's value wins
	done := make(chan Outcome, 1)
	go func() {
		o, _ := c.Do(leaderW, httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, time.Hour, time.Minute, fetch)
		done <- o
	}()
	<-started
	waiterW := httptest.NewRecorder()
	waiter := make(chan Outcome, 1)
	go func() {
		o, _ := c.Do(waiterW, httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, time.Hour, time.Minute, fetch)
		waiter <- o
	}()
	testkit.Eventually(t, "waiter", func() bool { return c.Waiting() == 1 })
	close(release)
	if o := <-done; o != Leader {
		t.Fatalf("leader outcome %v", o)
	}
	if o := <-waiter; o != Coalesced {
		t.Fatalf("waiter outcome %v", o)
	}
	lh := leaderW.Result().Header
	if lh.Get("X-Outer") != "leader's own" || lh.Get("X-Answer") != "upstream" || lh.Get("Content-Type") != "application/json" {
		t.Errorf("leader's header %v: want its own X-Outer back beside the upstream's fields", lh)
	}
	wh := waiterW.Result().Header
	if wh.Get("X-Outer") != "" || wh.Get("X-Answer") != "upstream" || wh.Get("Content-Type") != "application/json" {
		t.Errorf("waiter's header %v: want the upstream's fields only", wh)
	}
	// The cached copy is the same recording.
	cachedW := httptest.NewRecorder()
	if o, _ := c.Do(cachedW, httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, time.Hour, time.Minute, fetch); o != Cached || cachedW.Header().Get("X-Outer") != "" {
		t.Errorf("cached replay: %v, X-Outer %q", o, cachedW.Header().Get("X-Outer"))
	}
}

func TestFailedFetchLeavesTheLeadersHeaderAsItFoundIt(t *testing.T) {
	c := NewCoalescer(CoalescerConfig{})
	errDial := errors.New("dial upstream: connection refused")
	fetch := func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("X-Half-Built", "1")
		return errDial
	}
	key, _ := keyFor(httptest.NewRequest(http.MethodGet, "/x", nil), false)
	w := httptest.NewRecorder()
	w.Header().Set("Server", "Caddy")
	if o, err := c.Do(w, httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadDetached, time.Hour, time.Minute, fetch); o != Leader || !errors.Is(err, errDial) {
		t.Fatalf("Do: %v, %v", o, err)
	}
	if got := w.Header(); len(got) != 1 || got.Get("Server") != "Caddy" {
		t.Errorf("header after a failed fetch %v, want only the outer Server field", got)
	}
}

func TestDeclaredTrailersReachTheLeader(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		fmt.Fprint(w, "streamed")
		w.Header().Set("X-Checksum", "abc")
	})
	front, client := newGateway(t, NewCoalescer(CoalescerConfig{}), u, time.Hour, time.Minute, false)
	resp, body := get(t, client, front.URL+"/x", "tok")
	if resp == nil {
		return
	}
	if string(body) != "streamed" || resp.Trailer.Get("X-Checksum") != "abc" {
		t.Errorf("body %q, trailer %v: want the upstream's trailer", body, resp.Trailer)
	}
}
