package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/mxgate/mxgate/matrix"
)

// share_state under attack. During a herd on a room, `class room_state
// { share_state }` serves one fetch of the room's state to every requester
// the gate has verified as joined. Through such a gateway this test races a
// private room's joined members against an ex-member (who may read the
// state as it was when she left, not what was set after), an invited user,
// an outsider with a private room of her own, anonymous requests and
// requests carrying two tokens; with tokens in every form a homeserver
// accepts, the room ID as written and percent-encoded, r0 and v3, HEAD and
// GET, a dot-segment and an escaped-slash path. Every answer must be what
// the homeserver itself gives that request, only joined members' GETs may
// be served from a shared fetch, and some must be, or the test proved
// nothing.

const (
	shareMembers   = 4 // joined besides the room's owner
	shareRounds    = 12
	shareMinRounds = 3
	shareBudget    = 30 * time.Second
	shareTimeout   = 6 * time.Minute // the whole test, per homeserver
)

// shareStateCaddyfile turns share_state on with a herd at 3 users, so the
// members alone make one, and room state's own coalescing off, so that
// every answer marked as served from another fetch came from share_state.
// The queue is deep and long enough for a round's burst to wait rather
// than be refused.
const shareStateCaddyfile = `{
	admin %s
	persist_config off
	auto_https off
}

http://%s {
	mxgate {
		class room_state {
			share_state
			coalesce 0
			max_inflight 8
			queue 512
			queue_timeout 30s
		}
		herd {
			window 2m
			min_users 3
		}
	}
	reverse_proxy %s
}
`

// shareRoom is the test's cast. owner's private room is the one the herd
// asks for; mallory has a private room of her own and is in no other.
type shareRoom struct {
	owner, mallory *leakUser
	members        []*leakUser // joined, besides owner
	carol          *leakUser   // joined, then left
	ivan           *leakUser   // invited, never joined
	// afterLeave marks a state event set after carol left: she must
	// never see it.
	afterLeave string
}

// TestShareStateIsolation races members, ex-members, invitees, outsiders
// and anonymous requests for a private room's state through a gateway with
// share_state, against each homeserver.
func TestShareStateIsolation(t *testing.T) {
	forEachHomeserver(t, testShareStateIsolation)
}

func testShareStateIsolation(t *testing.T, s *hsEnv) {
	checkGoroutineLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), shareTimeout)
	defer cancel()

	cast := setUpShareRoom(t, ctx, s)
	reqs := cast.requests()
	client := &http.Client{Transport: newTransport(t), Timeout: 60 * time.Second}
	direct := directAnswers(t, ctx, client, s.hs.url(), reqs)
	cast.checkPremise(t, ctx, client, s.hs.url())
	// What the homeserver itself shows a request cannot be forbidden in
	// mxgate's answer to it (Dendrite shows an invited user the state);
	// such an answer must still equal the homeserver's and not be shared.
	var disclosed []string
	for i, r := range reqs {
		if shown := leakedSecrets(direct[r.key()].body, r.forbid); len(shown) > 0 {
			reqs[i].forbid = slices.DeleteFunc(slices.Clone(r.forbid), func(s string) bool { return slices.Contains(shown, s) })
			disclosed = append(disclosed, r.label)
		}
	}
	if len(disclosed) > 0 {
		t.Logf("%s itself shows the room's state to %d of the requests not joined: %s", s.name, len(disclosed), strings.Join(disclosed, " "))
	}

	g, err := startGatewayRun(ctx, env.bin, mkdir(env.tmp, s.name+"-share-state-"+uniqueSuffix()), "mxgate-share-state",
		func(admin, listen string) string {
			return fmt.Sprintf(shareStateCaddyfile, admin, listen, strings.TrimPrefix(s.hs.url(), "http://"))
		})
	if err != nil {
		t.Fatalf("starting mxgate run (share_state Caddyfile): %v", err)
	}
	t.Cleanup(func() { g.proc.stop(10 * time.Second) })

	shared := raceLeakRequests(t, ctx, client, "mxgate run, share_state", g.url, reqs, direct, true)
	for _, e := range []string{"state", "joined_members"} {
		if shared[e] == 0 {
			t.Errorf("no member's %s answer came from a shared fetch: share_state was never exercised there", e)
		}
	}
	cast.logOutDuringHerd(t, ctx, client, g.url, reqs)
	cast.leaveDuringHerd(t, ctx, client, g.url)
}

// leaveDuringHerd has a member the gateway verified leave the room (on the
// homeserver directly) before a new state event is set, then races its
// /state with the remaining members': it must get the homeserver's state at
// its leave, never the members' shared current state, and they must not get
// its snapshot.
func (c *shareRoom) leaveDuringHerd(t *testing.T, ctx context.Context, client *http.Client, base string) {
	t.Helper()
	room := c.owner.room
	gone := c.members[len(c.members)-2]
	if _, err := gone.cli.LeaveRoom(ctx, room); err != nil {
		t.Fatalf("%s leaves: %v", gone.name, err)
	}
	marker := "set-after-" + gone.name + "-left-" + uniqueSuffix()
	typ := event.Type{Type: "org.mxgate.e2e.after_member_left", Class: event.StateEventType}
	if _, err := c.owner.cli.SendStateEvent(ctx, room, typ, "", map[string]any{"secret": marker}); err != nil {
		t.Fatalf("setting state after %s left: %v", gone.name, err)
	}
	for i := 0; ; i++ {
		state, err := c.owner.cli.State(ctx, room)
		if err == nil && len(state[typ]) == 1 {
			break
		}
		if i == 100 {
			t.Fatalf("the homeserver never showed the state set after %s left", gone.name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stay := []*leakUser{c.owner, c.members[0], c.members[1]}
	get := func(u *leakUser) leakAnswer {
		r := leakRequest{method: http.MethodGet, path: "/_matrix/client/v3/rooms/" + room.String() + "/state",
			header: http.Header{"Authorization": {"Bearer " + u.token}}}
		ans, err := sendLeakRequest(ctx, client, base, r)
		if err != nil {
			t.Errorf("%s: %v", u.name, err)
		}
		return ans
	}
	shared := 0
	for range 2 * shareMinRounds {
		var wg sync.WaitGroup
		answers := make([]leakAnswer, len(stay)+1)
		for i, u := range append(slices.Clone(stay), gone) {
			wg.Go(func() { answers[i] = get(u) })
		}
		wg.Wait()
		for i, u := range stay {
			ans := answers[i]
			if ans.shared {
				shared++
			}
			if ans.status == http.StatusOK && !strings.Contains(string(ans.body), marker) {
				t.Errorf("%s got state without the event set after %s left (shared %v)", u.name, gone.name, ans.shared)
			}
		}
		if ans := answers[len(stay)]; ans.status != http.StatusTooManyRequests &&
			(ans.shared || strings.Contains(string(ans.body), marker)) {
			t.Errorf("%s after leaving: %d (shared %v) %s, want the homeserver's state at its leave", gone.name, ans.status, ans.shared, abbreviate(ans.body))
		}
	}
	t.Logf("after %s left: %d of the remaining members' answers shared", gone.name, shared)
}

// logOutDuringHerd logs the last member out through the gateway while the
// herd is on and its membership proof is still cached, then races its
// requests with the other members' again: the homeserver must answer them
// (401), not a shared fetch.
func (c *shareRoom) logOutDuringHerd(t *testing.T, ctx context.Context, client *http.Client, base string, reqs []leakRequest) {
	t.Helper()
	gone := c.members[len(c.members)-1]
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/_matrix/client/v3/logout", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+gone.token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s logs out through the gateway: %d", gone.name, resp.StatusCode)
	}
	var round []leakRequest
	for _, r := range reqs {
		if r.mayShare && strings.HasPrefix(r.label, "member") {
			round = append(round, r)
		}
	}
	results := make([]leakAnswer, len(round))
	for range shareMinRounds {
		var wg sync.WaitGroup
		for i, r := range round {
			wg.Go(func() {
				if strings.HasPrefix(r.label, gone.name+" ") {
					// Most likely to find the others' fetches in flight.
					time.Sleep(2 * time.Millisecond)
				}
				ans, err := sendLeakRequest(ctx, client, base, r)
				if err != nil {
					t.Errorf("%s: %v", r.label, err)
				}
				results[i] = ans
			})
		}
		wg.Wait()
		for i, r := range round {
			got := results[i]
			switch mine := strings.HasPrefix(r.label, gone.name+" "); {
			case mine && (got.status != http.StatusUnauthorized || got.shared):
				t.Errorf("%s after logging out: %d (shared %v) %s, want the homeserver's 401", r.label, got.status, got.shared, abbreviate(got.body))
			case !mine && got.status != http.StatusOK && got.status != http.StatusTooManyRequests:
				t.Errorf("%s while %s logged out: %d %s", r.label, gone.name, got.status, abbreviate(got.body))
			}
		}
	}
}

// setUpShareRoom registers the cast directly on the homeserver: owner's
// private room gets its members, carol joins and leaves, ivan is invited,
// and a state event is set after carol left. It returns once the
// homeserver shows all of it.
func setUpShareRoom(t *testing.T, ctx context.Context, s *hsEnv) *shareRoom {
	t.Helper()
	cast := &shareRoom{owner: setUpLeakUser(t, ctx, s, "owner"), mallory: setUpLeakUser(t, ctx, s, "mallory")}
	room := cast.owner.room
	newUser := func(role string) *leakUser {
		u := &leakUser{name: role, cli: newClient(t, s.hs.url(), newTransport(t)), room: room}
		if _, err := register(ctx, u.cli, fmt.Sprintf("share-%s-%s", role, uniqueSuffix()), "share-password"); err != nil {
			t.Fatalf("registering %s: %v", role, err)
		}
		u.token = u.cli.AccessToken
		if _, err := cast.owner.cli.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: u.cli.UserID}); err != nil {
			t.Fatalf("inviting %s: %v", role, err)
		}
		return u
	}
	join := func(u *leakUser) {
		if _, err := u.cli.JoinRoomByID(ctx, room); err != nil {
			t.Fatalf("%s joins: %v", u.name, err)
		}
	}
	for i := range shareMembers {
		m := newUser(fmt.Sprintf("member%d", i+1))
		join(m)
		cast.members = append(cast.members, m)
	}
	cast.carol, cast.ivan = newUser("carol"), newUser("ivan")
	join(cast.carol)
	if _, err := cast.carol.cli.LeaveRoom(ctx, room); err != nil {
		t.Fatalf("carol leaves: %v", err)
	}
	cast.afterLeave = "set-after-carol-left-" + uniqueSuffix()
	if _, err := cast.owner.cli.SendStateEvent(ctx, room, event.Type{Type: "org.mxgate.e2e.after_leave", Class: event.StateEventType}, "",
		map[string]any{"secret": cast.afterLeave}); err != nil {
		t.Fatalf("setting state after carol left: %v", err)
	}
	for i := 0; ; i++ {
		members, err := cast.owner.cli.JoinedMembers(ctx, room)
		state, serr := cast.owner.cli.State(ctx, room)
		after := state[event.Type{Type: "org.mxgate.e2e.after_leave", Class: event.StateEventType}]
		if err == nil && serr == nil && len(members.Joined) == 1+shareMembers && len(after) == 1 {
			break
		}
		if i == 100 {
			t.Fatalf("%s never showed the room as set up (joined_members %v, state %v)", s.name, err, serr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cast
}

// requests builds one round.
func (c *shareRoom) requests() []leakRequest {
	room, mroom := c.owner.room.String(), c.mallory.room.String()
	encoded := func(r string) string { return strings.ReplaceAll(url.PathEscape(r), ":", "%3A") }
	v3 := "/_matrix/client/v3/rooms/"
	type endpoint struct {
		name, path, query string
	}
	roomEndpoints := []endpoint{
		{"state", v3 + room + "/state", ""},
		{"state, encoded room", v3 + encoded(room) + "/state", ""},
		{"state, r0", "/_matrix/client/r0/rooms/" + room + "/state", ""},
		{"state, _cacheBuster", v3 + room + "/state", "_cacheBuster=17"},
		{"joined_members", v3 + room + "/joined_members", ""},
		{"joined_members, encoded room", v3 + encoded(room) + "/joined_members", ""},
	}
	// What must never appear in an answer to someone who is not joined.
	roomSecrets := append(slices.Clone(c.owner.secrets), c.afterLeave)
	build := func(label, method string, e endpoint, forbid []string, creds ...leakCredential) leakRequest {
		r := leakRequest{label: label + " " + e.name + ":", endpoint: e.name, method: method, path: e.path,
			header: http.Header{}, forbid: forbid, vetted: true}
		q := []string{}
		if e.query != "" {
			q = append(q, e.query)
		}
		for _, cr := range creds {
			q = credentialForms[cr.form](q, r.header, cr.user.token)
		}
		r.query = strings.Join(q, "&")
		return r
	}
	var out []leakRequest
	joined := append([]*leakUser{c.owner}, c.members...)
	others := []struct {
		u      *leakUser
		forbid []string
	}{{c.carol, []string{c.afterLeave}}, {c.ivan, roomSecrets}, {c.mallory, roomSecrets}}
	for i, e := range roomEndpoints {
		forms := []string{"header"}
		if i == 0 {
			forms = []string{"header", "access_token", "%61ccess_token", "access%5Ftoken"}
		}
		for _, f := range forms {
			for _, u := range joined {
				r := build(u.name+" by "+f, http.MethodGet, e, c.mallory.secrets, leakCredential{u, f})
				r.mayShare = true
				out = append(out, r)
			}
			for _, o := range others {
				out = append(out, build(o.u.name+" by "+f, http.MethodGet, e, o.forbid, leakCredential{o.u, f}))
			}
		}
		out = append(out, build("anonymous", http.MethodGet, e, roomSecrets))
	}
	state := roomEndpoints[0]
	m1 := c.members[0]
	out = append(out,
		// Two tokens: ambiguous, never shared; compared with what the
		// homeserver answers.
		build("mallory header + member1 access_token", http.MethodGet, state, nil, leakCredential{c.mallory, "header"}, leakCredential{m1, "access_token"}),
		build("member1 header + mallory %61ccess_token", http.MethodGet, state, nil, leakCredential{m1, "header"}, leakCredential{c.mallory, "%61ccess_token"}),
		build("carol access_token + member2 access%5Ftoken", http.MethodGet, state, nil, leakCredential{c.carol, "access_token"}, leakCredential{c.members[1], "access%5Ftoken"}),
		// HEAD racing the members' GETs.
		build("mallory HEAD", http.MethodHead, state, roomSecrets, leakCredential{c.mallory, "header"}),
		build("member1 HEAD", http.MethodHead, state, c.mallory.secrets, leakCredential{m1, "header"}),
	)
	// Paths that a resolving or slash-decoding server could read as the
	// herd room, from inside mallory's own room.
	dot := build("mallory dot segments", http.MethodGet, endpoint{"state, dot segments", v3 + mroom + "/../" + room + "/state", ""},
		roomSecrets, leakCredential{c.mallory, "header"})
	dot.dotSlash = true
	out = append(out, dot,
		build("mallory escaped slash", http.MethodGet, endpoint{"state, escaped slash", v3 + encoded(mroom) + "%2F..%2F" + encoded(room) + "/state", ""},
			roomSecrets, leakCredential{c.mallory, "header"}))
	// The members and the owner make a herd on mallory's room too, where
	// only she is joined: nobody else may have its state.
	for _, e := range []endpoint{{"mallory's state", v3 + mroom + "/state", ""}, {"mallory's state, encoded room", v3 + encoded(mroom) + "/state", ""}} {
		for _, u := range joined {
			out = append(out, build(u.name+" by header", http.MethodGet, e, c.mallory.secrets, leakCredential{u, "header"}))
		}
		r := build("mallory by header", http.MethodGet, e, c.owner.secrets, leakCredential{c.mallory, "header"})
		r.mayShare = true
		out = append(out, r)
	}
	return out
}

// checkPremise checks, directly on the homeserver, what share_state relies
// on and what makes this test's cast meaningful: every joined member's
// /state, vetted for sharing, is the same (so one member's answer is every
// member's),
// carol's lacks the event set after she left, and mallory's is refused.
func (c *shareRoom) checkPremise(t *testing.T, ctx context.Context, client *http.Client, base string) {
	t.Helper()
	get := func(u *leakUser) leakAnswer {
		r := leakRequest{method: http.MethodGet, path: "/_matrix/client/v3/rooms/" + c.owner.room.String() + "/state",
			header: http.Header{"Authorization": {"Bearer " + u.token}}}
		ans, err := sendLeakRequest(ctx, client, base, r)
		if err != nil {
			t.Fatalf("direct /state for %s: %v", u.name, err)
		}
		return ans
	}
	eventIDs := func(u *leakUser, ans leakAnswer) []string {
		var events []struct {
			EventID id.EventID `json:"event_id"`
		}
		if ans.status != http.StatusOK || json.Unmarshal(ans.body, &events) != nil {
			t.Fatalf("%s's /state directly: %d %s", u.name, ans.status, abbreviate(ans.body))
		}
		ids := make([]string, len(events))
		for i, e := range events {
			ids[i] = e.EventID.String()
		}
		slices.Sort(ids)
		return ids
	}
	// Shared is what matrix.VetSharedState makes of an answer, with the
	// values that differ between two identical requests (age) masked.
	n := newNormalizer(nil, true)
	shared := func(u *leakUser, ans leakAnswer) string {
		st, ok := matrix.VetSharedState(ans.body)
		if !ok {
			t.Fatalf("mxgate would not share %s's /state: %s", u.name, abbreviate(ans.body))
		}
		if !st.Joined[u.cli.UserID.String()] {
			t.Fatalf("%s's /state does not show it joined: mxgate would not serve it that answer", u.name)
		}
		return n.normalizeBody(st.Body)
	}
	owner := get(c.owner)
	wantIDs, want := eventIDs(c.owner, owner), shared(c.owner, owner)
	for _, m := range c.members {
		ans := get(m)
		if got := eventIDs(m, ans); !slices.Equal(got, wantIDs) {
			t.Fatalf("the homeserver gives joined members different state: %s %d events, owner %d", m.name, len(got), len(wantIDs))
		}
		if got := shared(m, ans); got != want {
			t.Fatalf("the homeserver gives joined members different state: %s\n%s\nowner\n%s", m.name, got, want)
		}
	}
	if !strings.Contains(string(owner.body), c.afterLeave) {
		t.Fatalf("the owner's /state lacks the event set after carol left")
	}
	if carol := get(c.carol); strings.Contains(string(carol.body), c.afterLeave) {
		t.Fatalf("the homeserver itself shows carol state set after she left: the ex-member case proves nothing")
	} else {
		t.Logf("directly: joined members %d events; carol (left) %d %d bytes; mallory %d", len(wantIDs), carol.status, len(carol.body), get(c.mallory).status)
	}
	if st := get(c.mallory).status; st == http.StatusOK {
		t.Fatalf("the homeserver gives mallory the private room's state")
	}
}

// withoutUnsignedMembership returns a /state answer without the events'
// unsigned.membership, which a shared answer does not carry (it is the
// requester's own); any other body comes back as it was.
func withoutUnsignedMembership(body []byte) []byte {
	var events []map[string]json.RawMessage
	if json.Unmarshal(body, &events) != nil {
		return body
	}
	for _, ev := range events {
		var unsigned map[string]json.RawMessage
		if raw, ok := ev["unsigned"]; !ok || json.Unmarshal(raw, &unsigned) != nil {
			continue
		}
		delete(unsigned, "membership")
		ev["unsigned"], _ = json.Marshal(unsigned)
	}
	out, err := json.Marshal(events)
	if err != nil {
		return body
	}
	return out
}
