package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/mxgate/mxgate/gate"
	"github.com/mxgate/mxgate/matrix"
)

// Redeploy traffic: redeployUsers users each run a /messages loop and a
// /state loop; redeploySenders of them also send messages with transaction
// IDs, retrying a failed send with the same ID as real clients do.
const (
	redeployUsers   = 12
	redeploySenders = 4
	// redeployWarm and redeployAfter are how long traffic runs before the
	// restart and after the homeserver is back (longer than the gateway's
	// 10 s slow start).
	redeployWarm  = 3 * time.Second
	redeployAfter = 12 * time.Second
	// redeployClientTimeout is every client request's own deadline:
	// longer than any restart the test allows.
	redeployClientTimeout = 2 * time.Minute
	// redeployNoticeMargin is how long after the homeserver's return a
	// request's deadline must reach for it to be owed a success: mxgate
	// learns of the return from a TCP probe every DefaultProbeInterval,
	// then admits the backlog through slow start.
	redeployNoticeMargin = 2*gate.DefaultProbeInterval + time.Second
	// historySettle bounds the wait for the room's history to list every
	// stored message: longer than JetStream's default ack wait (30 s),
	// after which Dendrite's sync API is sent again what it had not
	// acknowledged when it stopped.
	historySettle = 45 * time.Second
)

// redeployRecord is one client request of the redeploy traffic.
type redeployRecord struct {
	class      matrix.Class
	start, end time.Time
	status     int    // 0 when the request failed without an answer
	err        string // transport error or non-2xx body
	eventID    string // a successful send's answer
}

// TestRedeploy stops the homeserver and starts it again on the same port and
// database under steady GET and send traffic through `mxgate gateway`
// (ride-through and slow start on, as by default). Every idempotent request
// whose class deadline outlasts the restart must succeed, no message may be
// stored twice, and the homeserver's concurrency must ramp up after it
// returns instead of taking the whole backlog at once.
func TestRedeploy(t *testing.T) {
	forEachHomeserver(t, testRedeploy)
}

func testRedeploy(t *testing.T, s *hsEnv) {
	checkGoroutineLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	probe, err := newSwitchProbe(s.hs.url())
	if err != nil {
		t.Fatal(err)
	}
	if err := probe.on(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(probe.off)
	dir := mkdir(env.tmp, s.name+"-redeploy-"+uniqueSuffix())
	g, err := startGatewayDefaults(ctx, env.bin, dir, "http://"+probe.addr)
	if err != nil {
		t.Fatalf("starting mxgate gateway: %v", err)
	}
	t.Cleanup(func() { g.proc.stop(10 * time.Second) })

	users, room := setUpRedeployRoom(t, ctx, s)
	rt := newTransport(t)
	client := &http.Client{Transport: rt, Timeout: redeployClientTimeout}

	var (
		mu      sync.Mutex
		records []redeployRecord
		sent    []ackedSend // every acknowledged send
	)
	record := func(r redeployRecord) {
		mu.Lock()
		defer mu.Unlock()
		records = append(records, r)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Add(2)
		go func() {
			defer wg.Done()
			redeployReadLoop(ctx, client, g.url, u, room, matrix.History, i, stop, record)
		}()
		go func() {
			defer wg.Done()
			redeployReadLoop(ctx, client, g.url, u, room, matrix.RoomState, i, stop, record)
		}()
		if i < redeploySenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				redeploySendLoop(ctx, client, g.url, u, room, i, stop, record, func(a ackedSend) {
					mu.Lock()
					defer mu.Unlock()
					sent = append(sent, a)
				})
			}()
		}
	}

	time.Sleep(redeployWarm) // steady traffic before the restart, by design
	downAt := time.Now()
	probe.off()
	restartErr := s.hs.restart(ctx)
	if restartErr == nil {
		restartErr = probe.on()
	}
	upAt := time.Now()
	if restartErr == nil {
		time.Sleep(redeployAfter) // traffic through the slow start, by design
	}
	close(stop)
	wg.Wait()
	if restartErr != nil {
		t.Fatalf("restarting %s: %v", s.name, restartErr)
	}
	t.Logf("%s was away for %v (stopped and started again on %s, same database)",
		s.name, upAt.Sub(downAt).Round(time.Millisecond), s.hs.url())

	// Client-visible errors: none for a request whose class deadline
	// (mxgate's queue timeout, from the request's arrival) reaches past the
	// homeserver's return by redeployNoticeMargin.
	var failed, excused []string
	byClass := map[matrix.Class]int{}
	heldThrough := 0 // requests in flight while the homeserver was away
	for _, r := range records {
		byClass[r.class]++
		if r.start.Before(upAt) && r.end.After(downAt) {
			heldThrough++
		}
		if r.status/100 == 2 {
			continue
		}
		line := fmt.Sprintf("%s at %+.1fs: status %d %s", r.class, r.start.Sub(downAt).Seconds(), r.status, r.err)
		if r.start.Add(matrix.DefaultLimits[r.class].QueueTimeout).Before(upAt.Add(redeployNoticeMargin)) && r.status == http.StatusTooManyRequests {
			excused = append(excused, line) // its deadline ended while the homeserver was away
			continue
		}
		failed = append(failed, line)
	}
	t.Logf("%d requests (%v), %d of them in flight while %s was away; %d refused because their deadline ended during the restart",
		len(records), byClass, heldThrough, s.name, len(excused))
	if heldThrough < redeployUsers {
		t.Errorf("only %d requests were in flight during the restart; the test did not load the restart", heldThrough)
	}
	if len(failed) > 0 {
		t.Errorf("%d client-visible errors for idempotent requests whose deadline outlasted the restart; first: %s",
			len(failed), strings.Join(failed[:min(5, len(failed))], "; "))
	}

	// Every acknowledged send is stored, under the event ID its answer
	// named, with the body that was sent: asked of the homeserver's event
	// store directly.
	direct := newClient(t, s.hs.url(), newTransport(t))
	direct.SetCredentials(users[0].UserID, users[0].AccessToken)
	var missing int
	var stored []ackedSend
	storeDeadline := time.Now().Add(10 * time.Second)
	for _, a := range sent {
		switch err := storedEvent(ctx, direct, room, a, storeDeadline); {
		case err == nil:
			stored = append(stored, a)
		case errors.Is(err, errEventNotFound):
			missing++
			t.Logf("acknowledged message %q (%s) is not stored", a.body, a.eventID)
		default:
			t.Errorf("acknowledged message %q: %v", a.body, err)
		}
	}
	// No duplicate: every stored message appears once in the room's
	// history. The history is built asynchronously from the event store
	// (Dendrite's sync API consumes it from a stream, which redelivers what
	// the stopped consumer had not acknowledged only after its ack wait),
	// so it is read until it lists every stored message.
	counts := settledMessageCounts(t, ctx, direct, room, stored)
	var dup, unlisted int
	for _, a := range stored {
		switch counts[a.body] {
		case 0:
			unlisted++
			t.Logf("stored message %q (%s) is not in the room's history", a.body, a.eventID)
		case 1:
		default:
			dup++
			t.Logf("message %q stored %d times", a.body, counts[a.body])
		}
	}
	t.Logf("%d sends acknowledged, %d not stored, %d duplicated, %d stored but not in the room's history",
		len(sent), missing, dup, unlisted)
	// A send cut off by the stop may have been stored already; its retry
	// (by mxgate or the client, with the same transaction ID) is then a
	// duplicate unless the homeserver remembers transaction IDs across a
	// restart. Synapse does (in its database); Dendrite keeps them in
	// memory, so there each sender may store its one cut-off send twice.
	if allowed := s.hs.restartDuplicates(redeploySenders); dup > allowed {
		t.Errorf("%d messages stored twice; %s allows %d", dup, s.name, allowed)
	}
	// Both homeservers persist what they acknowledge (Dendrite with its
	// JetStream on disk), so nothing may be missing from the event store.
	// Dendrite's sync API may drop from the room's history an event it was
	// processing when it stopped (seen: 1 of ~150, still missing after
	// historySettle): its fault, one per sender at most; Synapse none.
	if missing > 0 {
		t.Errorf("%d acknowledged messages are not stored by %s", missing, s.name)
	}
	allowedUnlisted := 0
	if s.name == "dendrite" {
		allowedUnlisted = redeploySenders
	}
	if unlisted > allowedUnlisted {
		t.Errorf("%d stored messages are not in the room's history; %s allows %d", unlisted, s.name, allowedUnlisted)
	}

	// Slow start: right after the return, the homeserver sees a fraction of
	// the history cap although the whole backlog is waiting for it.
	limit := matrix.DefaultLimits[matrix.History].MaxInflight
	early := probe.peakConcurrency("history", upAt, upAt.Add(time.Second))
	late := probe.peakConcurrency("history", upAt.Add(5*time.Second), upAt.Add(redeployAfter))
	before := probe.peakConcurrency("history", downAt.Add(-redeployWarm), downAt)
	t.Logf("/messages concurrency at %s: before the restart %d, first second back %d, 5-12 s back %d (cap %d, %d readers)",
		s.name, before, early, late, limit, redeployUsers)
	if ceiling := int(math.Ceil(0.3 * float64(limit))); early > ceiling {
		t.Errorf("%d /messages at the homeserver in the first second after it returned; slow start allows about %d", early, ceiling)
	}
	if probe.countIn("history", upAt, upAt.Add(redeployAfter)) == 0 {
		t.Errorf("no /messages reached %s after it returned", s.name)
	}
}

// setUpRedeployRoom registers redeployUsers users directly on the
// homeserver and has them all join one room.
func setUpRedeployRoom(t *testing.T, ctx context.Context, s *hsEnv) ([]*mautrix.Client, id.RoomID) {
	t.Helper()
	rt := newTransport(t)
	suffix := uniqueSuffix()
	users := make([]*mautrix.Client, redeployUsers)
	for i := range users {
		users[i] = newClient(t, s.hs.url(), rt)
	}
	err := forEachBounded(ctx, redeployUsers, 4, func(ctx context.Context, i int) error {
		_, err := register(ctx, users[i], fmt.Sprintf("redeploy-%s-%02d", suffix, i), "redeploy-password")
		return err
	})
	if err != nil {
		t.Fatalf("registering: %v", err)
	}
	created, err := users[0].CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "redeploy"})
	if err != nil {
		t.Fatalf("creating the room: %v", err)
	}
	for _, u := range users[1:] {
		if _, err := u.JoinRoomByID(ctx, created.RoomID); err != nil {
			t.Fatalf("joining: %v", err)
		}
	}
	return users, created.RoomID
}

// redeployReadLoop fetches the room's /messages (class History) or /state
// (class RoomState) through base until stop, one request at a time. Each
// loop asks for a different page size, so users' requests do not coalesce
// into one.
func redeployReadLoop(ctx context.Context, client *http.Client, base string, u *mautrix.Client, room id.RoomID,
	class matrix.Class, i int, stop <-chan struct{}, record func(redeployRecord)) {
	path := "/_matrix/client/v3/rooms/" + url.PathEscape(room.String())
	if class == matrix.History {
		path += fmt.Sprintf("/messages?dir=b&limit=%d", 5+i)
	} else {
		path += "/state"
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		record(redeployDo(ctx, client, http.MethodGet, base+path, u.AccessToken, nil, class))
		select {
		case <-stop:
			return
		case <-time.After(50 * time.Millisecond): // pacing between a client's requests
		}
	}
}

// redeploySendLoop sends numbered messages with transaction IDs through
// base until stop. A failed send is retried with the same transaction ID;
// acked reports every send the homeserver acknowledged.
func redeploySendLoop(ctx context.Context, client *http.Client, base string, u *mautrix.Client, room id.RoomID,
	i int, stop <-chan struct{}, record func(redeployRecord), acked func(ackedSend)) {
	for seq := 0; ; {
		select {
		case <-stop:
			return
		default:
		}
		txn := fmt.Sprintf("redeploy-%d-%d", i, seq)
		body := fmt.Sprintf("redeploy sender %d message %d", i, seq)
		payload, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
		path := "/_matrix/client/v3/rooms/" + url.PathEscape(room.String()) + "/send/m.room.message/" + txn
		r := redeployDo(ctx, client, http.MethodPut, base+path, u.AccessToken, payload, matrix.Send)
		record(r)
		if r.status/100 == 2 {
			acked(ackedSend{body: body, eventID: id.EventID(r.eventID)})
			seq++
		}
		select {
		case <-stop:
			return
		case <-time.After(200 * time.Millisecond): // pacing, and the retry interval
		}
	}
}

// redeployDo makes one request and records its outcome.
func redeployDo(ctx context.Context, client *http.Client, method, rawURL, token string, body []byte, class matrix.Class) (r redeployRecord) {
	r = redeployRecord{class: class, start: time.Now()}
	defer func() { r.end = time.Now() }()
	req, err := http.NewRequestWithContext(ctx, method, rawURL, bytes.NewReader(body))
	if err != nil {
		r.err = err.Error()
		return r
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxRecordedBody))
	r.status = resp.StatusCode
	if r.status/100 != 2 {
		r.err = abbreviate(data)
		return r
	}
	if method == http.MethodPut {
		var sent struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal(data, &sent); err != nil || sent.EventID == "" {
			r.status, r.err = 0, "a 2xx send answer without an event_id: "+abbreviate(data)
			return r
		}
		r.eventID = sent.EventID
	}
	return r
}

// ackedSend is a send the homeserver acknowledged.
type ackedSend struct {
	body    string
	eventID id.EventID
}

// errEventNotFound is storedEvent's answer for an event the homeserver does
// not hold.
var errEventNotFound = errors.New("event not found")

// storedEvent checks that the homeserver direct talks to stores a's event
// with a's body, asking GET /rooms/{room}/event/{eventID}. A 404 is asked
// again until deadline (the homeserver may still be processing its input
// after a restart) before it becomes errEventNotFound.
func storedEvent(ctx context.Context, direct *mautrix.Client, room id.RoomID, a ackedSend, deadline time.Time) error {
	for {
		evt, err := direct.GetEvent(ctx, room, a.eventID)
		if err == nil {
			if got, _ := evt.Content.Raw["body"].(string); got != a.body || evt.Type.Type != "m.room.message" {
				return fmt.Errorf("event %s holds %s %q, not the message sent", a.eventID, evt.Type.Type, got)
			}
			return nil
		}
		if !errors.Is(err, mautrix.MNotFound) {
			return fmt.Errorf("reading event %s: %w", a.eventID, err)
		}
		if time.Now().After(deadline) {
			return errEventNotFound
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// settledMessageCounts reads the room's history until it lists every body
// of want (at most historySettle), and returns how often each body appears.
func settledMessageCounts(t *testing.T, ctx context.Context, direct *mautrix.Client, room id.RoomID, want []ackedSend) map[string]int {
	t.Helper()
	deadline := time.Now().Add(historySettle)
	for {
		counts := roomMessageCounts(t, ctx, direct, room)
		complete := true
		for _, a := range want {
			complete = complete && counts[a.body] > 0
		}
		if complete || time.Now().After(deadline) {
			return counts
		}
		time.Sleep(time.Second) // the history is built asynchronously, by design
	}
}

// roomMessageCounts counts the bodies of every m.room.message in the room,
// paging backwards through its whole history on the homeserver direct
// talks to.
func roomMessageCounts(t *testing.T, ctx context.Context, direct *mautrix.Client, room id.RoomID) map[string]int {
	t.Helper()
	counts := map[string]int{}
	from := ""
	for page := 0; page < 100; page++ {
		resp, err := direct.Messages(ctx, room, from, "", mautrix.DirectionBackward, nil, 500)
		if err != nil {
			t.Fatalf("reading the room's history: %v", err)
		}
		for _, e := range resp.Chunk {
			if b, ok := e.Content.Raw["body"].(string); ok && e.Type.Type == "m.room.message" {
				counts[b]++
			}
		}
		if len(resp.Chunk) == 0 || resp.End == "" {
			return counts
		}
		from = resp.End
	}
	t.Fatalf("the room's history has more than 100 pages")
	return nil
}
