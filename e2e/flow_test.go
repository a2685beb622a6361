package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// largeMediaSize is the "large body" of the flow: big enough to span many
// reads and writes in every proxy layer, below Dendrite's 10 MB upload cap
// (Synapse's is 50 MB).
const largeMediaSize = 5 << 20

// longPollTimeout is the /sync timeout of the wake-up step; the step must
// return well before it.
const longPollTimeout = 30 * time.Second

// flowStep is one client call of the flow and every HTTP exchange it made.
type flowStep struct {
	op        string
	unordered bool // the endpoint's array order is unspecified
	exchanges []exchange
}

// flowRun is one pass of the client flow against one base URL.
type flowRun struct {
	base  string
	steps []flowStep
	// names maps the run's own identifiers to role names for the normalizer.
	names map[string]string
	// wakeDelay is how long the long-poll /sync took to return after the
	// message that should wake it was sent.
	wakeDelay time.Duration
}

// runClientFlow drives two mautrix users through every client call the
// transparency test covers, against base, recording what each call received.
// tag makes the run's user names unique on the shared homeserver.
func runClientFlow(t *testing.T, ctx context.Context, s *hsEnv, base, tag string) *flowRun {
	t.Helper()
	rec := newRecorder(newTransport(t), true)
	run := &flowRun{base: base, names: map[string]string{}}
	step := func(op string, unordered bool) {
		run.steps = append(run.steps, flowStep{op: op, unordered: unordered, exchanges: rec.take()})
	}
	must := func(op string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s via %s: %v", op, base, err)
		}
	}
	const password = "e2e-password-1"

	alice, bob := newClient(t, base, rec), newClient(t, base, rec)
	aliceName, bobName := "alice-"+tag, "bob-"+tag
	_, err := register(ctx, alice, aliceName, password)
	must("register alice", err)
	step("register alice", false)
	_, err = register(ctx, bob, bobName, password)
	must("register bob", err)
	step("register bob", false)
	run.names[alice.UserID.String()], run.names[aliceName] = "@alice", "alice"
	run.names[bob.UserID.String()], run.names[bobName] = "@bob", "bob"

	bobPhone := newClient(t, base, rec)
	_, err = bobPhone.Login(ctx, &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: bobName},
		Password:   password, StoreCredentials: true,
	})
	must("login bob", err)
	step("login", false)

	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "e2e room", Topic: "transparency"})
	must("create room", err)
	step("createRoom", false)
	room := created.RoomID
	run.names[room.String()] = "!room"

	_, err = bob.JoinRoomByID(ctx, room)
	must("join", err)
	step("join", false)

	var messages []id.EventID
	for i := 1; i <= 3; i++ {
		sent, err := alice.SendText(ctx, room, fmt.Sprintf("message %d", i))
		must("send", err)
		step("send", false)
		run.names[sent.EventID.String()] = fmt.Sprintf("$message%d", i)
		messages = append(messages, sent.EventID)
	}
	last := messages[len(messages)-1]

	must("read markers", bob.SetReadMarkers(ctx, room, &mautrix.ReqSetReadMarkers{Read: last, FullyRead: last}))
	step("read_markers", false)

	initial := settledInitialSync(t, ctx, s, run, bob, room, last)
	step("initial sync", false)

	state, err := bob.State(ctx, room)
	must("state", err)
	step("state", true)
	if len(state[event.StateMember]) != 2 {
		t.Fatalf("state via %s: %d members, want 2", base, len(state[event.StateMember]))
	}
	_, err = bob.Members(ctx, room)
	must("members", err)
	step("members", true)
	_, err = bob.JoinedMembers(ctx, room)
	must("joined_members", err)
	step("joined_members", false)
	history, err := bob.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 10)
	must("messages", err)
	step("messages", false)
	if len(history.Chunk) == 0 || history.Chunk[0].ID != last {
		t.Fatalf("messages via %s: newest event is not the last message", base)
	}
	_, err = bob.GetEvent(ctx, room, messages[0])
	must("event", err)
	step("event", false)

	// The same lookups with every special character percent-encoded, and
	// IDs that do not exist, one of them with an encoded slash.
	for _, raw := range []struct{ label, path string }{
		{"encoded room and event IDs", "/_matrix/client/v3/rooms/" + escapeAll(room.String()) + "/event/" + escapeAll(messages[1].String())},
		{"unknown encoded IDs", "/_matrix/client/v3/rooms/%21xyz%3Alocalhost/event/%24abc"},
		{"encoded slash in event ID", "/_matrix/client/v3/rooms/" + escapeAll(room.String()) + "/event/%24abc%2Fdef%3F"},
	} {
		rawGet(t, ctx, rec, base+raw.path, bob.AccessToken)
		step("raw GET, "+raw.label, false)
	}

	small := []byte("hello from e2e")
	uploadAndDownload(t, ctx, run, bob, small, "text/plain", step, "small")
	large := make([]byte, largeMediaSize)
	rng := rand.NewChaCha8([32]byte{'e', '2', 'e'}) // same bytes in every run
	_, _ = rng.Read(large)
	uploadAndDownload(t, ctx, run, bob, large, "application/octet-stream", step, "large")

	run.wakeDelay = longPollWake(t, ctx, run, alice, bob, room, initial.NextBatch, rec)
	return run
}

// uploadAndDownload uploads data, downloads it back, and fails unless the
// download is byte-identical.
func uploadAndDownload(t *testing.T, ctx context.Context, run *flowRun, cli *mautrix.Client,
	data []byte, contentType string, step func(string, bool), label string) {
	t.Helper()
	up, err := cli.UploadBytes(ctx, data, contentType)
	if err != nil {
		t.Fatalf("upload %s via %s: %v", label, run.base, err)
	}
	step("upload "+label, false)
	run.names[up.ContentURI.FileID] = "media-" + label
	got, err := cli.DownloadBytes(ctx, up.ContentURI)
	if err != nil {
		t.Fatalf("download %s via %s: %v", label, run.base, err)
	}
	step("download "+label, false)
	if !bytes.Equal(got, data) {
		t.Fatalf("download %s via %s: %d bytes, differ from the %d uploaded", label, run.base, len(got), len(data))
	}
}

// longPollWake starts an incremental /sync with a 30 s timeout, sends a
// message while it waits, and returns how long after the send the /sync
// returned with that message.
func longPollWake(t *testing.T, ctx context.Context, run *flowRun, sender, waiter *mautrix.Client,
	room id.RoomID, since string, rec *recorder) time.Duration {
	t.Helper()
	// Catch up first so the long poll has nothing pending but the message.
	// Dendrite writes some account data (push rules) asynchronously, so
	// repeat until a sync comes back empty.
	for i := 0; ; i++ {
		resp, err := waiter.SyncRequest(ctx, 0, since, "", false, "")
		if err != nil {
			t.Fatalf("catch-up sync via %s: %v", run.base, err)
		}
		since = resp.NextBatch
		if syncIsEmpty(resp) {
			break
		}
		if i == 20 {
			t.Fatalf("sync via %s never caught up", run.base)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rec.take() // timing-dependent content; not compared
	type result struct {
		resp *mautrix.RespSync
		err  error
		at   time.Time
	}
	// Park a long poll and give it a second to reach the homeserver. Late
	// bookkeeping can still wake it early; then re-park, a bounded number
	// of times.
	var done chan result
	for attempt := 0; ; attempt++ {
		done = make(chan result, 1)
		go func(since string) {
			resp, err := waiter.SyncRequest(ctx, int(longPollTimeout/time.Millisecond), since, "", false, "")
			done <- result{resp, err, time.Now()}
		}(since)
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatalf("long-poll sync via %s: %v", run.base, r.err)
			}
			if attempt == 3 {
				t.Fatalf("long-poll sync via %s keeps returning before any message is sent", run.base)
			}
			since = r.resp.NextBatch
			continue
		case <-time.After(time.Second):
		}
		break
	}
	rec.take()           // early wakes, if any: not compared
	sentAt := time.Now() // before the send: the sync may wake before it returns
	sent, err := sender.SendText(ctx, room, "wake up")
	if err != nil {
		t.Fatalf("send wake-up via %s: %v", run.base, err)
	}
	run.names[sent.EventID.String()] = "$wake"
	var r result
	select {
	case r = <-done:
	case <-time.After(longPollTimeout + 10*time.Second):
		t.Fatalf("long-poll sync via %s never returned", run.base)
	}
	if r.err != nil {
		t.Fatalf("long-poll sync via %s: %v", run.base, r.err)
	}
	// The woken /sync may be recorded before or after the send that woke
	// it; order the two by method so runs compare.
	woken := rec.take()
	sort.Slice(woken, func(i, j int) bool { return woken[i].method < woken[j].method })
	run.steps = append(run.steps, flowStep{op: "long-poll sync woken by send", exchanges: woken})
	if !timelineHas(r.resp, room, sent.EventID) {
		t.Fatalf("long-poll sync via %s returned without the message that woke it", run.base)
	}
	return r.at.Sub(sentAt)
}

// settledInitialSync waits until the homeserver's sync stream, which
// Dendrite feeds asynchronously, has caught up with the flow so far (the last
// message in the timeline, the read marker in the room's account data), then makes the one
// recorded initial /sync through cli. The waiting polls go straight to
// the homeserver with the same token, so they neither get recorded nor use up the
// per-user sync_initial rate budget at the gateway.
func settledInitialSync(t *testing.T, ctx context.Context, s *hsEnv, run *flowRun, cli *mautrix.Client,
	room id.RoomID, last id.EventID) *mautrix.RespSync {
	t.Helper()
	settled := func(resp *mautrix.RespSync) bool {
		joined := resp.Rooms.Join[room]
		return timelineHas(resp, room, last) && joined != nil && hasEventType(joined.AccountData.Events, event.AccountDataFullyRead)
	}
	poller := newClient(t, s.hs.url(), newTransport(t))
	poller.SetCredentials(cli.UserID, cli.AccessToken)
	for i := 0; ; i++ {
		resp, err := poller.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatalf("initial sync directly against %s: %v", s.name, err)
		}
		if settled(resp) {
			break
		}
		if i == 50 {
			t.Fatalf("%s's initial sync never showed the last message and read marker", s.name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, err := cli.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatalf("initial sync via %s: %v", run.base, err)
	}
	if !settled(resp) {
		t.Fatalf("initial sync via %s lacks the last message or read marker %s already serves", run.base, s.name)
	}
	return resp
}

func hasEventType(events []*event.Event, typ event.Type) bool {
	for _, e := range events {
		if e.Type == typ {
			return true
		}
	}
	return false
}

// syncIsEmpty reports whether a sync response carries nothing new for the
// client beyond stream positions.
func syncIsEmpty(resp *mautrix.RespSync) bool {
	return len(resp.Rooms.Join) == 0 && len(resp.Rooms.Invite) == 0 && len(resp.Rooms.Leave) == 0 &&
		len(resp.AccountData.Events) == 0 && len(resp.Presence.Events) == 0 && len(resp.ToDevice.Events) == 0
}

// timelineHas reports whether a sync response's timeline for room holds evt.
func timelineHas(resp *mautrix.RespSync, room id.RoomID, evt id.EventID) bool {
	joined := resp.Rooms.Join[room]
	if joined == nil {
		return false
	}
	for _, e := range joined.Timeline.Events {
		if e.ID == evt {
			return true
		}
	}
	return false
}

// rawGet sends a GET with the path exactly as given (no re-encoding) through
// rec, which records the answer.
func rawGet(t *testing.T, ctx context.Context, rec *recorder, rawURL, token string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatalf("raw GET %s: %v", rawURL, err)
	}
	if got := req.URL.EscapedPath(); !strings.HasSuffix(rawURL, got) {
		t.Fatalf("raw GET: Go would send %q for %q", got, rawURL)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Transport: rec}).Do(req)
	if err != nil {
		t.Fatalf("raw GET %s: %v", rawURL, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// escapeAll percent-encodes every byte outside the unreserved set, including
// the sigils ! $ @ and the : that Go's PathEscape leaves alone.
func escapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
