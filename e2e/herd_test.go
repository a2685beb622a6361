package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// herdSize is how many registered users stampede one room.
const herdSize = 200

// herdExtraState is how many state events besides the members' the herd
// room has: with the members, a few hundred. SQLite serialises writes
// (a state event costs Synapse ~85 ms), so this is sized for setup time.
const herdExtraState = 100

// herdStateType is the type of the herd room's extra state events.
var herdStateType = event.Type{Type: "org.mxgate.e2e.herd", Class: event.StateEventType}

// herdRetries is mautrix's DefaultHTTPRetries for the herd: enough 429 +
// Retry-After rounds for 2×herdSize requests to drain through a cap of 2,
// also when a loaded machine makes Synapse take ~1.5 s per initial sync.
const herdRetries = 150

// TestHerd has herdSize members of one room (with herdExtraState more state
// events) ask for its state
// and an initial sync all at once, through a gateway whose room_state and
// sync_initial caps are tightCap. mautrix's own retry, honouring mxgate's
// Retry-After, must get every client its answer; no client may see a 5xx;
// the homeserver must never see more than the cap at once; and mxgate's metrics
// must show the requests it held back.
func TestHerd(t *testing.T) {
	forEachHomeserver(t, testHerd)
}

func testHerd(t *testing.T, s *hsEnv) {
	checkGoroutineLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	room, tokens := setUpHerdRoom(t, ctx, s)

	before, err := scrapeMetrics(ctx, s.tight.admin)
	if err != nil {
		t.Fatalf("metrics before the herd: %v", err)
	}
	s.probe.reset()
	rec := newRecorder(newTransport(t), false)
	clients := make([]*mautrix.Client, herdSize)
	for i := range clients {
		clients[i] = newClient(t, s.tight.url, rec)
		clients[i].SetCredentials(tokens[i].user, tokens[i].token)
		clients[i].DefaultHTTPRetries = herdRetries
		clients[i].DefaultHTTPBackoff = time.Second // for network errors; 429s use Retry-After
		clients[i].MaxHTTPBackoff = 5 * time.Second
	}

	start := make(chan struct{})
	errs := make(chan error, 2*herdSize)
	var wg sync.WaitGroup
	for _, cli := range clients {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			errs <- herdState(ctx, cli, room)
		}()
		go func() {
			defer wg.Done()
			<-start
			errs <- herdInitialSync(ctx, cli, room)
		}()
	}
	classes := []string{"room_state", "sync_initial"}
	watch := watchGauges(ctx, s.tight.admin, 200*time.Millisecond, classes,
		[]string{"mxgate_inflight", "mxgate_queue_length", "mxgate_herds_active"})
	began := time.Now()
	close(start)
	wg.Wait()
	peaks, scrapeErrors := watch.finish()
	close(errs)
	var failed []error
	for err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	after, err := scrapeMetrics(ctx, s.tight.admin)
	if err != nil {
		t.Fatalf("metrics after the herd: %v", err)
	}

	// Everything observed is logged first, so a failure explains itself.
	statuses := rec.statusCounts()
	t.Logf("herd of %d users finished in %v; statuses seen by clients: %v", herdSize, time.Since(began).Round(time.Millisecond), statuses)
	t.Logf("gauge peaks during the herd (%d failed scrapes): %v", scrapeErrors, peaks)
	outcomes := map[string]map[string]float64{}
	for _, class := range classes {
		outcomes[class] = map[string]float64{}
		for _, outcome := range []string{"admitted", "queued", "shed", "timeout", "rate_limited", "coalesced", "canceled"} {
			m := map[string]string{"class": class, "outcome": outcome}
			outcomes[class][outcome] = metricSum(after, "mxgate_requests_total", m) - metricSum(before, "mxgate_requests_total", m)
		}
		cm := map[string]string{"class": class}
		upCount := metricSum(after, "mxgate_upstream_duration_seconds_count", cm) - metricSum(before, "mxgate_upstream_duration_seconds_count", cm)
		upSum := metricSum(after, "mxgate_upstream_duration_seconds_sum", cm) - metricSum(before, "mxgate_upstream_duration_seconds_sum", cm)
		waitCount := metricSum(after, "mxgate_queue_wait_seconds_count", cm) - metricSum(before, "mxgate_queue_wait_seconds_count", cm)
		waitSum := metricSum(after, "mxgate_queue_wait_seconds_sum", cm) - metricSum(before, "mxgate_queue_wait_seconds_sum", cm)
		t.Logf("%s: mxgate_requests_total grew by %v; upstream %v requests, mean %.3fs; queue waits %v, mean %.3fs; %s peak concurrency %d",
			class, outcomes[class], upCount, upSum/max(upCount, 1), waitCount, waitSum/max(waitCount, 1), s.name, s.probe.peakOf(class))
	}

	if len(failed) > 0 {
		t.Errorf("%d of %d herd requests failed; first: %v", len(failed), 2*herdSize, errors.Join(failed[:min(3, len(failed))]...))
	}
	for status, n := range statuses {
		if status >= 500 {
			t.Errorf("clients saw %d responses with status %d; mxgate must not turn overload into 5xx", n, status)
		}
	}
	if statuses[http.StatusTooManyRequests] == 0 {
		t.Errorf("no client was ever told to back off (429); the caps were never reached")
	}
	for _, class := range classes {
		if peak := s.probe.peakOf(class); peak == 0 || peak > tightCap {
			t.Errorf("%s saw at most %d %s requests at once; want 1..%d", s.name, peak, class, tightCap)
		}
		if peak := peaks["mxgate_inflight/"+class]; peak > tightCap {
			t.Errorf("mxgate_inflight{class=%q} reached %v; cap is %d", class, peak, tightCap)
		}
		o := outcomes[class]
		if o["admitted"] < 1 {
			t.Errorf("%s: mxgate_requests_total{outcome=\"admitted\"} did not grow", class)
		}
		if o["queued"]+o["shed"]+o["timeout"] == 0 {
			t.Errorf("%s: mxgate_requests_total shows nothing queued, shed or timed out; the cap never acted", class)
		}
	}
}

// herdCredentials is one herd member's login.
type herdCredentials struct {
	user  id.UserID
	token string
}

// setUpHerdRoom registers herdSize users directly on the homeserver
// (bounded parallelism), has all of them join one room, adds herdExtraState
// state events, and waits until the homeserver reports every member joined.
// Setup traffic bypasses mxgate on purpose.
func setUpHerdRoom(t *testing.T, ctx context.Context, s *hsEnv) (id.RoomID, []herdCredentials) {
	t.Helper()
	rt := newTransport(t)
	suffix := uniqueSuffix()
	clients := make([]*mautrix.Client, herdSize)
	for i := range clients {
		clients[i] = newClient(t, s.hs.url(), rt)
	}
	err := forEachBounded(ctx, herdSize, 8, func(ctx context.Context, i int) error {
		_, err := register(ctx, clients[i], fmt.Sprintf("herd-%s-%03d", suffix, i), "herd-password")
		return err
	})
	if err != nil {
		t.Fatalf("registering the herd: %v", err)
	}
	created, err := clients[0].CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "herd"})
	if err != nil {
		t.Fatalf("creating the herd room: %v", err)
	}
	room := created.RoomID
	err = forEachBounded(ctx, herdSize-1, 4, func(ctx context.Context, i int) error {
		_, err := clients[i+1].JoinRoomByID(ctx, room)
		return err
	})
	if err != nil {
		t.Fatalf("joining the herd room: %v", err)
	}
	err = forEachBounded(ctx, herdExtraState, 4, func(ctx context.Context, i int) error {
		_, err := clients[0].SendStateEvent(ctx, room, herdStateType, fmt.Sprintf("key-%03d", i),
			map[string]any{"n": i, "note": "a state event of the herd room"})
		return err
	})
	if err != nil {
		t.Fatalf("adding state to the herd room: %v", err)
	}
	if _, err := clients[0].SendText(ctx, room, "something unusual happens"); err != nil {
		t.Fatalf("send: %v", err)
	}
	for i := 0; ; i++ {
		members, err := clients[0].JoinedMembers(ctx, room)
		if err != nil {
			t.Fatalf("joined_members: %v", err)
		}
		if len(members.Joined) == herdSize {
			break
		}
		if i == 100 {
			t.Fatalf("%s shows %d of %d herd members joined", s.name, len(members.Joined), herdSize)
		}
		time.Sleep(100 * time.Millisecond)
	}
	creds := make([]herdCredentials, herdSize)
	for i, c := range clients {
		creds[i] = herdCredentials{user: c.UserID, token: c.AccessToken}
	}
	return room, creds
}

// herdState fetches the room state through mautrix (with its retries) and
// checks that it lists every herd member.
func herdState(ctx context.Context, cli *mautrix.Client, room id.RoomID) error {
	state, err := cli.State(ctx, room)
	if err != nil {
		return fmt.Errorf("%s: /state: %w", cli.UserID, err)
	}
	if n := len(state[event.StateMember]); n != herdSize {
		return fmt.Errorf("%s: /state lists %d members, want %d", cli.UserID, n, herdSize)
	}
	if n := len(state[herdStateType]); n != herdExtraState {
		return fmt.Errorf("%s: /state lists %d %s events, want %d", cli.UserID, n, herdStateType.Type, herdExtraState)
	}
	return nil
}

// herdInitialSync performs an initial /sync with mautrix's request retries.
// (mautrix's SyncRequest makes one attempt by design, leaving retries to its
// Sync loop; a bare request with the client's DefaultHTTPRetries is the same
// backoff machinery applied to one call.)
func herdInitialSync(ctx context.Context, cli *mautrix.Client, room id.RoomID) error {
	var resp mautrix.RespSync
	_, err := cli.MakeFullRequest(ctx, mautrix.FullRequest{
		Method:       http.MethodGet,
		URL:          cli.BuildClientURL("v3", "sync"),
		ResponseJSON: &resp,
	})
	if err != nil {
		return fmt.Errorf("%s: initial /sync: %w", cli.UserID, err)
	}
	if resp.Rooms.Join[room] == nil {
		return fmt.Errorf("%s: initial /sync lacks the herd room", cli.UserID)
	}
	return nil
}
