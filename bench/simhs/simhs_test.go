package simhs

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"
	"github.com/mxgate/mxgate/matrix"
)

// fastConfig runs the model 100x faster than real time.
func fastConfig() Config {
	c := DefaultConfig()
	c.TimeScale = 100
	for i := range c.Costs {
		c.Costs[i].BodyBytes = min(c.Costs[i].BodyBytes, 4<<10)
	}
	return c
}

func startServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	before := runtime.NumGoroutine()
	s := New(cfg)
	url, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		waitGoroutines(t, before)
	})
	return s, url
}

func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutine leak: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, ctx context.Context, method, url string) (int, string, error) {
	return getAs(t, ctx, method, url, "")
}

// getAs is get with an access token ("" for none).
func getAs(_ *testing.T, ctx context.Context, method, url, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestLongPollWakesOnSend(t *testing.T) {
	cfg := fastConfig()
	cfg.TimeScale = 1 // the poll would otherwise time out before the send
	s, url := startServer(t, cfg)
	done := make(chan string, 1)
	go func() {
		_, body, _ := get(t, context.Background(), "GET", url+"/_matrix/client/v3/sync?since=s0&timeout=20000")
		done <- body
	}()
	testkit.Eventually(t, "the long-poll to be inside", func() bool { return s.Stats().Current == 1 })
	if code, _, err := get(t, context.Background(), "PUT", url+"/_matrix/client/v3/rooms/!r:x/send/m.room.message/t1"); err != nil || code != 200 {
		t.Fatalf("send: %d %v", code, err)
	}
	select {
	case body := <-done:
		if !strings.Contains(body, `"next_batch":"s1"`) {
			t.Fatalf("sync answer %q does not carry the new position", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long-poll did not wake on send")
	}
}

func TestLongPollTimesOutWithoutDB(t *testing.T) {
	cfg := fastConfig()
	cfg.DBPool = 1
	s, url := startServer(t, cfg)
	// Occupy the only DB connection with a slow write; an idle long-poll
	// must still return at its timeout because it holds no connection.
	s.ArmSlowWrites(1)
	go get(t, context.Background(), "POST", url+"/_matrix/client/v3/rooms/!r:x/read_markers")
	testkit.Eventually(t, "slow write inside", func() bool { return s.Stats().Current == 1 })
	code, body, err := get(t, context.Background(), "GET", url+"/_matrix/client/v3/sync?since=s0&timeout=1")
	if err != nil || code != 200 || !strings.Contains(body, "next_batch") {
		t.Fatalf("sync: %d %q %v", code, body, err)
	}
}

func TestSlowWriteBlocksOtherWrites(t *testing.T) {
	s, url := startServer(t, fastConfig())
	s.ArmSlowWrites(1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		get(t, context.Background(), "POST", url+"/_matrix/client/v3/rooms/!r:x/read_markers")
	}()
	testkit.Eventually(t, "slow write inside", func() bool { return s.Stats().Current == 1 })
	get(t, context.Background(), "PUT", url+"/_matrix/client/v3/rooms/!r:x/send/m.room.message/t1")
	sendDone := time.Now()
	wg.Wait()
	// The send's answer cannot come before the slow write released the
	// lock. (Which client hears back first after the release is a race of
	// their own, so the test compares against the release itself.)
	released := s.Stats().LastSlowWriteEnd
	if released.IsZero() {
		t.Fatal("slow write end not recorded")
	}
	if sendDone.Before(released) {
		t.Fatalf("send finished %v before the slow write released the lock", released.Sub(sendDone))
	}
}

func TestWorkContinuesForGoneClient(t *testing.T) {
	cfg := fastConfig()
	cfg.DBPool = 1
	s, url := startServer(t, cfg)
	// A slow write holds the only DB connection for 300 ms real; the room
	// state request queues behind it and its client gives up meanwhile.
	s.ArmSlowWrites(1)
	go get(t, context.Background(), "POST", url+"/_matrix/client/v3/rooms/!r:x/read_markers")
	testkit.Eventually(t, "slow write inside", func() bool { return s.Stats().Current == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := get(t, ctx, "GET", url+"/_matrix/client/v3/rooms/!big:x/state"); err == nil {
		t.Fatal("room state answered while the pool was held")
	}
	testkit.Eventually(t, "the abandoned work to complete", func() bool { return s.Stats().Completed == 2 })
	st := s.Stats()
	if st.Wasted != 1 || st.WastedWork != cfg.Costs[3].DB+cfg.Costs[3].CPU {
		t.Fatalf("want the abandoned room state counted as waste, got %+v", st)
	}
}

func TestFDLimitStallsThenWedgesUntilRestart(t *testing.T) {
	cfg := fastConfig()
	cfg.MaxFDs = 1
	cfg.WedgeAfter = time.Second // 10 ms real
	s, url := startServer(t, cfg)
	addr := strings.TrimPrefix(url, "http://")

	// One connection takes the only descriptor.
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "first connection accepted", func() bool { return s.Stats().OpenFDs == 1 })

	// A second client stalls in the backlog: no answer.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, _, err := get(t, ctx, "GET", url+"/_matrix/client/versions"); err == nil {
		t.Fatal("request answered although the server is out of descriptors")
	}
	st := s.Stats()
	if st.AcceptErrors == 0 || st.PeakFDs != 1 {
		t.Fatalf("want accept errors and peak fds 1, got %+v", st)
	}

	// Exhausted for longer than WedgeAfter: once a descriptor frees, the
	// process still answers nothing.
	held.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if _, _, err := get(t, ctx2, "GET", url+"/_matrix/client/versions"); err == nil {
		t.Fatal("wedged server answered")
	}
	if s.Stats().Wedges != 1 {
		t.Fatalf("want one wedge, got %+v", s.Stats())
	}

	if err := s.Restart(0); err != nil {
		t.Fatal(err)
	}
	if code, _, err := get(t, context.Background(), "GET", url+"/_matrix/client/versions"); err != nil || code != 200 {
		t.Fatalf("after restart: %d %v", code, err)
	}
}

func TestRestartRefusesWhileDown(t *testing.T) {
	cfg := fastConfig()
	cfg.TimeScale = 1
	s, url := startServer(t, cfg)
	done := make(chan error, 1)
	go func() { done <- s.Restart(2 * time.Second) }()
	testkit.Eventually(t, "restart to begin", func() bool { return s.Stats().Restarts == 1 })
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if _, _, err := get(t, context.Background(), "GET", url+"/_matrix/client/versions"); err == nil {
		t.Fatal("server answered while down")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if code, _, err := get(t, context.Background(), "GET", url+"/_matrix/client/versions"); err != nil || code != 200 {
		t.Fatalf("after restart: %d %v", code, err)
	}
}

func TestCPUIsShared(t *testing.T) {
	c := newCPU(func() float64 { return 1 })
	defer c.close()
	a := &cpuJob{remaining: 1, done: make(chan struct{})}
	b := &cpuJob{remaining: 2, done: make(chan struct{})}
	start := time.Now()
	c.mu.Lock()
	c.last = start
	c.jobs[a], c.jobs[b] = struct{}{}, struct{}{}
	c.advance(start.Add(time.Second)) // two jobs share one core: half speed each
	c.mu.Unlock()
	if a.remaining != 0.5 || b.remaining != 1.5 {
		t.Fatalf("after 1s shared: a=%v b=%v, want 0.5 and 1.5", a.remaining, b.remaining)
	}
	c.mu.Lock()
	c.advance(start.Add(2 * time.Second))
	c.mu.Unlock()
	select {
	case <-a.done:
	default:
		t.Fatal("job a not finished after its share of 2s")
	}
	if b.remaining != 1 {
		t.Fatalf("b.remaining = %v, want 1", b.remaining)
	}
}

func TestStatsCountClassesAndPeaks(t *testing.T) {
	s, url := startServer(t, fastConfig())
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			get(t, context.Background(), "GET", url+"/_matrix/client/v3/rooms/!big:x/state")
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.ByClass[3] != 5 { // matrix.RoomState
		t.Fatalf("room_state count = %d, want 5", st.ByClass[3])
	}
	if st.Completed != 5 || st.Peak < 1 || st.Peak > 5 || st.PeakNonSync != st.Peak {
		t.Fatalf("unexpected stats %+v", st)
	}
}

// What share_state asks a homeserver to prove a requester's membership:
// whoami names the token's user, and that user's member event says join.
// Neither costs what the room's full state costs.
func TestWhoamiAndMembership(t *testing.T) {
	cfg := fastConfig()
	cfg.Costs[matrix.History].CPU = time.Millisecond
	_, url := startServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	do := func(path, token string) (int, string) {
		t.Helper()
		status, body, err := getAs(t, ctx, http.MethodGet, url+path, token)
		if err != nil {
			t.Fatal(err)
		}
		return status, body
	}
	var users []string
	for _, tok := range []string{"syt_a", "syt_b"} {
		status, body := do("/_matrix/client/v3/account/whoami", tok)
		var who struct {
			UserID string `json:"user_id"`
		}
		if err := json.Unmarshal([]byte(body), &who); status != http.StatusOK || err != nil || who.UserID == "" {
			t.Fatalf("whoami for %s: %d %q (%v)", tok, status, body, err)
		}
		users = append(users, who.UserID)
	}
	if users[0] == users[1] {
		t.Fatalf("two tokens, one user %q", users[0])
	}
	status, body := do("/_matrix/client/v3/rooms/%21big%3Asim.test/state/m.room.member/"+neturl.PathEscape(users[0]), "syt_a")
	if status != http.StatusOK || body != `{"membership":"join"}` {
		t.Fatalf("member event: %d %q", status, body)
	}
}

// A room listed in RoomMembers answers its state at the size and cost the
// calibration gives for its members; any other room costs the big room's.
func TestRoomStateIsPricedByTheRoomsMembers(t *testing.T) {
	cfg := fastConfig()
	cfg.Costs[matrix.RoomState] = Cost{DB: 80 * time.Millisecond, CPU: 200 * time.Millisecond, BodyBytes: 64 << 10}
	cfg.RoomMembers = map[string]int{"!chat:sim.test": 10}
	s, url := startServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	state := func(room string) (body int, work time.Duration) {
		t.Helper()
		before := s.Stats().WorkDone
		status, b, err := get(t, ctx, http.MethodGet, url+"/_matrix/client/v3/rooms/"+neturl.PathEscape(room)+"/state")
		if err != nil || status != http.StatusOK {
			t.Fatalf("%s: %d %v", room, status, err)
		}
		return len(b), s.Stats().WorkDone - before
	}
	small := RoomStateCost(10)
	if small.CPU != 1150*time.Microsecond || small.BodyBytes != 4200 {
		t.Fatalf("RoomStateCost(10) = %+v, want 1.15 ms CPU and 4200 bytes", small)
	}
	if body, work := state("!chat:sim.test"); body < small.BodyBytes || body > small.BodyBytes+512 || work != small.CPU+small.DB {
		t.Fatalf("ten-member room: %d bytes, %v of work; want about %d bytes and %v", body, work, small.BodyBytes, small.CPU+small.DB)
	}
	big := cfg.Costs[matrix.RoomState]
	if body, work := state("!big:sim.test"); body < big.BodyBytes || work != big.CPU+big.DB {
		t.Fatalf("unlisted room: %d bytes, %v of work; want %d bytes and %v", body, work, big.BodyBytes, big.CPU+big.DB)
	}
}
