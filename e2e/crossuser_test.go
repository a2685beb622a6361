package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/mxgate/mxgate/herd"
)

// Cross-user isolation: user A owns a private room, user B is not in it.
// Both ask the gateway for the same resources at the same moment, with their
// credentials in every form a homeserver accepts (and some it rejects). B
// must never see A's data (nor A B's), and every answer must be what the
// homeserver itself gives that exact request.

// crossUserRounds is how many times every variant is raced; crossUserBudget
// stops starting new rounds once it is spent, so a slow machine still ends
// in bounded time (at least crossUserMinRounds rounds run).
const (
	crossUserRounds    = 30
	crossUserMinRounds = 3
	crossUserBudget    = 25 * time.Second // per gateway
	crossUserTimeout   = 6 * time.Minute  // the whole test, per homeserver
)

// leakUser is one side of the test: its token and what only it may see.
type leakUser struct {
	name  string
	cli   *mautrix.Client
	token string
	room  id.RoomID
	// secrets are the marker strings and event IDs of the user's room.
	// The room ID itself is secret only in /sync: a request for the
	// room by ID may be answered with an error naming it.
	secrets []string
}

// forbidden returns what u's data looks like in an answer to a request
// for path.
func (u *leakUser) forbidden(path string) []string {
	if strings.HasSuffix(path, "/sync") {
		return append([]string{u.room.String()}, u.secrets...)
	}
	return u.secrets
}

// leakRequest is one HTTP request of a round, described so it can be sent
// unchanged directly and through the gateway.
type leakRequest struct {
	label    string // variant and endpoint, for messages
	endpoint string
	method   string
	path     string // raw path, sent as is
	query    string // raw query, sent as is
	header   http.Header
	forbid   []string // secrets that must not appear in the answer
	ordered  bool     // false for /state, whose array order is unspecified
	dotSlash bool     // a dot-segment path mxgate may refuse with 400
	// mayShare marks a joined member's GET of room state, which a
	// share_state gateway may answer from another member's fetch; vetted
	// says that such an answer lacks the unsigned.membership fields that
	// matrix.VetSharedState removes.
	mayShare, vetted bool
}

func (r leakRequest) key() string {
	var hs []string
	for k, v := range r.header {
		hs = append(hs, k+": "+strings.Join(v, ","))
	}
	sort.Strings(hs)
	return r.method + " " + r.path + "?" + r.query + " " + strings.Join(hs, "; ")
}

// leakAnswer is the part of a response the comparison looks at.
type leakAnswer struct {
	status int
	body   []byte
	shared bool // marked as served from another request's fetch
}

// TestCrossUserIsolation races A's and B's requests for A's private room's
// /state and /messages and for /sync (initial, filtered, incremental),
// through `mxgate gateway` with its defaults and through mxgate's defaults
// without the initial-sync rate limit.
func TestCrossUserIsolation(t *testing.T) {
	forEachHomeserver(t, testCrossUserIsolation)
}

func testCrossUserIsolation(t *testing.T, s *hsEnv) {
	checkGoroutineLeaks(t)
	// Setting up two users and their rooms took 80 s on a cold, loaded CI
	// machine; the rounds themselves are bounded by crossUserBudget.
	ctx, cancel := context.WithTimeout(context.Background(), crossUserTimeout)
	defer cancel()

	a, b := setUpLeakUser(t, ctx, s, "a"), setUpLeakUser(t, ctx, s, "b")
	since := leakSyncSince(t, ctx, a)
	reqs := leakRequests(a, b, since)

	rt := newTransport(t)
	client := &http.Client{Transport: rt, Timeout: 30 * time.Second}
	direct := directAnswers(t, ctx, client, s.hs.url(), reqs)

	unthrottled, err := startGatewayUnthrottled(ctx, env.bin, mkdir(env.tmp, s.name+"-unthrottled-"+uniqueSuffix()),
		strings.TrimPrefix(s.hs.url(), "http://"))
	if err != nil {
		t.Fatalf("starting mxgate run (unthrottled Caddyfile): %v", err)
	}
	t.Cleanup(func() { unthrottled.proc.stop(10 * time.Second) })
	// The gateway as users run it, then the same defaults without the
	// per-user initial-sync rate, under which most racing initial syncs of
	// one user would be refused rather than compared.
	for _, target := range []struct {
		name string
		g    *gateway
	}{{"mxgate gateway", s.gateway}, {"mxgate run, sync_initial unthrottled", unthrottled}} {
		raceLeakRequests(t, ctx, client, target.name, target.g.url, reqs, direct, false)
	}
}

// directAnswers is what the homeserver at base itself answers each
// distinct request of reqs: the rooms and the users do not change while a
// test races them, so once is enough.
func directAnswers(t *testing.T, ctx context.Context, client *http.Client, base string, reqs []leakRequest) map[string]leakAnswer {
	t.Helper()
	direct := map[string]leakAnswer{}
	for _, r := range reqs {
		if _, ok := direct[r.key()]; ok {
			continue
		}
		ans, err := sendLeakRequest(ctx, client, base, r)
		if err != nil {
			t.Fatalf("direct %s: %v", r.label, err)
		}
		direct[r.key()] = ans
	}
	return direct
}

// raceLeakRequests sends every request of reqs at once through the gateway
// at base, round after round, and fails t for every answer that holds the
// other user's data or differs from direct. With shareState, an answer
// served from another request's fetch is a failure unless its request
// mayShare; it returns how many answers were, by endpoint.
func raceLeakRequests(t *testing.T, ctx context.Context, client *http.Client, name, base string,
	reqs []leakRequest, direct map[string]leakAnswer, shareState bool) (shared map[string]int) {
	t.Helper()
	var (
		mu       sync.Mutex
		failures []string
		refused  int // mxgate's own 429s
		compared int
		rounds   int
		// perEndpoint counts compared answers by endpoint, so the log
		// shows that every endpoint was really checked.
		perEndpoint = map[string]int{}
		sharedN     int
	)
	shared = map[string]int{}
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	began := time.Now()
	for rounds < crossUserRounds && (rounds < crossUserMinRounds || time.Since(began) < crossUserBudget) {
		rounds++
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, r := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got, err := sendLeakRequest(ctx, client, base, r)
				if err != nil {
					fail("%s: %v", r.label, err)
					return
				}
				if leaked := leakedSecrets(got.body, r.forbid); len(leaked) > 0 {
					fail("%s: answer (%d) holds another user's data %q", r.label, got.status, leaked)
				}
				if shareState && got.shared && !r.mayShare {
					fail("%s: answered (%d) from another request's shared fetch", r.label, got.status)
				}
				verdict := judgeLeakAnswer(r, got, direct[r.key()])
				mu.Lock()
				defer mu.Unlock()
				if got.shared {
					sharedN++
					shared[r.endpoint]++
				}
				switch verdict {
				case "":
					compared++
					perEndpoint[r.endpoint]++
				case "refused":
					refused++
				default:
					failures = append(failures, r.label+": "+verdict)
				}
			}()
		}
		close(start)
		wg.Wait()
		if ctx.Err() != nil {
			t.Fatalf("%s: the test's %v ran out in round %d, before its answers could be judged", name, crossUserTimeout, rounds)
		}
	}
	t.Logf("%s: %d rounds of %d requests in %v: %d answers equal to direct %v, %d from another request's fetch %v, %d refused by mxgate (429), %d failures",
		name, rounds, len(reqs), time.Since(began).Round(time.Millisecond), compared, perEndpoint, sharedN, shared, refused, len(failures))
	if len(failures) > 0 {
		sort.Strings(failures)
		t.Errorf("%s: %d of %d answers wrong; by variant:\n%s", name, len(failures), rounds*len(reqs), summarizeFailures(failures))
	}
	if compared == 0 {
		t.Errorf("%s: no answer could be compared (all refused)", name)
	}
	return shared
}

// judgeLeakAnswer returns "" when got is what the homeserver answers the
// same request directly (status and JSON, modulo volatile fields),
// "refused" for mxgate's own 429, and otherwise what is wrong.
func judgeLeakAnswer(r leakRequest, got, want leakAnswer) string {
	// A 429 the homeserver does not give is mxgate's own (M_LIMIT_EXCEEDED;
	// a HEAD answer has no body to say so).
	if got.status == http.StatusTooManyRequests && want.status != http.StatusTooManyRequests &&
		(errcodeOf(got.body) == "M_LIMIT_EXCEEDED" || r.method == http.MethodHead) {
		return "refused"
	}
	if r.dotSlash && got.status == http.StatusBadRequest && errcodeOf(got.body) == "M_UNRECOGNIZED" {
		return ""
	}
	n := newNormalizer(nil, !r.ordered)
	gotBody, wantBody := got.body, want.body
	if r.vetted {
		gotBody, wantBody = withoutUnsignedMembership(gotBody), withoutUnsignedMembership(wantBody)
	}
	if got.status != want.status || n.normalizeBody(gotBody) != n.normalizeBody(wantBody) {
		return fmt.Sprintf("through mxgate %d %s; directly %d %s",
			got.status, abbreviate(got.body), want.status, abbreviate(want.body))
	}
	return ""
}

// summarizeFailures groups failure lines by their variant label and shows
// one example of each.
func summarizeFailures(failures []string) string {
	count := map[string]int{}
	example := map[string]string{}
	var labels []string
	for _, f := range failures {
		label, _, _ := strings.Cut(f, ": ")
		if count[label] == 0 {
			labels = append(labels, label)
			example[label] = f
		}
		count[label]++
	}
	var out strings.Builder
	for _, l := range labels {
		fmt.Fprintf(&out, "  %3d× %s\n", count[l], abbreviate([]byte(example[l])))
	}
	return out.String()
}

func abbreviate(b []byte) string {
	const max = 300
	s := string(bytes.TrimSpace(b))
	if len(s) > max {
		return s[:max] + fmt.Sprintf("…(%d bytes)", len(b))
	}
	return s
}

func errcodeOf(body []byte) string {
	var e struct {
		Errcode string `json:"errcode"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Errcode
}

// leakedSecrets returns the secrets found in body.
func leakedSecrets(body []byte, secrets []string) []string {
	var found []string
	for _, s := range secrets {
		if bytes.Contains(body, []byte(s)) {
			found = append(found, s)
		}
	}
	return found
}

// setUpLeakUser registers a user directly on the homeserver, gives them a
// private room with a name, a topic, a custom state event and three
// messages that all carry a marker, and waits until the room's history
// shows the messages.
func setUpLeakUser(t *testing.T, ctx context.Context, s *hsEnv, role string) *leakUser {
	t.Helper()
	u := &leakUser{name: role, cli: newClient(t, s.hs.url(), newTransport(t))}
	if _, err := register(ctx, u.cli, fmt.Sprintf("leak-%s-%s", role, uniqueSuffix()), "leak-password"); err != nil {
		t.Fatal(err)
	}
	u.token = u.cli.AccessToken
	marker := fmt.Sprintf("private-to-%s-%s", role, uniqueSuffix())
	created, err := u.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat", Name: marker + "-name", Topic: marker + "-topic",
	})
	if err != nil {
		t.Fatalf("%s creates a room: %v", role, err)
	}
	u.room = created.RoomID
	u.secrets = []string{marker}
	st, err := u.cli.SendStateEvent(ctx, u.room, event.Type{Type: "org.mxgate.e2e.secret", Class: event.StateEventType}, "",
		map[string]any{"secret": marker + "-state"})
	if err != nil {
		t.Fatalf("%s sets state: %v", role, err)
	}
	u.secrets = append(u.secrets, st.EventID.String())
	for i := 1; i <= 3; i++ {
		sent, err := u.cli.SendText(ctx, u.room, fmt.Sprintf("%s-message-%d", marker, i))
		if err != nil {
			t.Fatalf("%s sends: %v", role, err)
		}
		u.secrets = append(u.secrets, sent.EventID.String())
	}
	for i := 0; ; i++ {
		msgs, err := u.cli.Messages(ctx, u.room, "", "", mautrix.DirectionBackward, nil, 10)
		if err == nil && len(msgs.Chunk) > 0 && strings.Contains(string(msgs.Chunk[0].Content.VeryRaw), "message-3") {
			break
		}
		if i == 50 {
			t.Fatalf("%s's room history never showed the last message (err %v)", role, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return u
}

// leakSyncSince returns a sync position for the incremental /sync variant.
func leakSyncSince(t *testing.T, ctx context.Context, u *leakUser) string {
	t.Helper()
	resp, err := u.cli.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatalf("initial sync for %s: %v", u.name, err)
	}
	return resp.NextBatch
}

// basicAuth is a non-Bearer Authorization header: homeservers differ on
// whether a query token then counts, so mxgate must not guess.
const basicAuth = "Basic ZTJlOmUyZQ=="

// A credentialForm puts a token into a request's query parts q or its
// header h.
type credentialForm func(q []string, h http.Header, token string) []string

func queryCredential(name string) credentialForm {
	return func(q []string, _ http.Header, tok string) []string { return append(q, name+"="+url.QueryEscape(tok)) }
}

// credentialForms are the ways a token reaches a homeserver: the four
// every homeserver accepts, and a Basic header beside a query token, on
// which they differ.
var credentialForms = map[string]credentialForm{
	"header":         func(q []string, h http.Header, tok string) []string { h.Add("Authorization", "Bearer "+tok); return q },
	"access_token":   queryCredential("access_token"),
	"%61ccess_token": queryCredential("%61ccess_token"),
	"access%5Ftoken": queryCredential("access%5Ftoken"),
	"Basic+access_token": func(q []string, h http.Header, tok string) []string {
		h.Set("Authorization", basicAuth)
		return append(q, "access_token="+url.QueryEscape(tok))
	},
}

// leakCredential is one credential of a request: whose token, in which
// of credentialForms.
type leakCredential struct {
	user *leakUser
	form string
}

// leakRequests builds one round: for every endpoint, every variant's
// requests.
func leakRequests(a, b *leakUser, since string) []leakRequest {
	roomPath := "/_matrix/client/v3/rooms/" + url.PathEscape(a.room.String())
	endpoints := []struct {
		name, path, query string
		ordered           bool
	}{
		{"state", roomPath + "/state", "", false},
		{"messages", roomPath + "/messages", "dir=b&limit=10", true},
		{"sync", "/_matrix/client/v3/sync", "timeout=0", true},
		{"sync filter", "/_matrix/client/v3/sync", "timeout=0&filter=" + url.QueryEscape(`{"room":{"timeline":{"limit":2}}}`), true},
		{"sync since", "/_matrix/client/v3/sync", "timeout=0&since=" + url.QueryEscape(since), true},
	}
	type cred = leakCredential
	build := func(variant, method string, ep int, creds ...cred) leakRequest {
		e := endpoints[ep]
		r := leakRequest{label: variant + " " + e.name, endpoint: e.name, method: method, path: e.path, header: http.Header{}, ordered: e.ordered}
		q := []string{}
		if e.query != "" {
			q = append(q, e.query)
		}
		owners := map[*leakUser]bool{}
		for _, c := range creds {
			q = credentialForms[c.form](q, r.header, c.user.token)
			owners[c.user] = true
		}
		r.query = strings.Join(q, "&")
		// A single-user (or anonymous) request must carry nothing of
		// the other user's; a request with both tokens is only compared
		// with the homeserver's own answer.
		switch {
		case len(owners) == 0:
			r.forbid = append(a.forbidden(e.path), b.forbidden(e.path)...)
		case owners[a] && !owners[b]:
			r.forbid = b.forbidden(e.path)
		case owners[b] && !owners[a]:
			r.forbid = a.forbidden(e.path)
		}
		return r
	}
	var out []leakRequest
	for ep := range endpoints {
		for _, f := range []string{"header", "access_token", "%61ccess_token", "access%5Ftoken", "Basic+access_token"} {
			out = append(out, build("A and B by "+f+":", http.MethodGet, ep, cred{a, f}),
				build("A and B by "+f+":", http.MethodGet, ep, cred{b, f}))
		}
		out = append(out,
			// One user's token in a form the other does not use.
			build("A by header, B by %61ccess_token:", http.MethodGet, ep, cred{a, "header"}),
			build("A by header, B by %61ccess_token:", http.MethodGet, ep, cred{b, "%61ccess_token"}),
			build("A by access%5Ftoken, B by access_token:", http.MethodGet, ep, cred{a, "access%5Ftoken"}),
			build("A by access%5Ftoken, B by access_token:", http.MethodGet, ep, cred{b, "access_token"}),
			// Two credentials in one request, racing single ones.
			build("mixed A header + B access_token:", http.MethodGet, ep, cred{a, "header"}, cred{b, "access_token"}),
			build("mixed B header + A %61ccess_token:", http.MethodGet, ep, cred{b, "header"}, cred{a, "%61ccess_token"}),
			build("mixed A access_token + B access%5Ftoken:", http.MethodGet, ep, cred{a, "access_token"}, cred{b, "access%5Ftoken"}),
			// HEAD racing GET.
			build("A HEAD, B GET, header:", http.MethodHead, ep, cred{a, "header"}),
			build("A HEAD, B GET, header:", http.MethodGet, ep, cred{b, "header"}),
			build("A GET, B HEAD, %61ccess_token:", http.MethodGet, ep, cred{a, "%61ccess_token"}),
			build("A GET, B HEAD, %61ccess_token:", http.MethodHead, ep, cred{b, "%61ccess_token"}),
			// Anonymous racing authenticated.
			build("anonymous vs A header:", http.MethodGet, ep),
			build("anonymous vs A header:", http.MethodGet, ep, cred{a, "header"}),
		)
	}
	// A dot-segment path that a resolving server would read as A's room
	// history, under the media prefix mxgate shares across users.
	dot := leakRequest{endpoint: "dot-segment", method: http.MethodGet, path: "/_matrix/media/v3/download/../../../client/v3/rooms/" +
		url.PathEscape(a.room.String()) + "/messages", query: "dir=b&limit=10", ordered: true, dotSlash: true}
	for _, u := range []*leakUser{a, b} {
		r := dot
		r.label = "dot-segment media path, " + u.name + " by header:"
		r.header = http.Header{"Authorization": {"Bearer " + u.token}}
		if u == b {
			r.forbid = a.forbidden(r.path)
		}
		out = append(out, r)
	}
	return out
}

// sendLeakRequest sends r to base with its path and query exactly as built.
func sendLeakRequest(ctx context.Context, client *http.Client, base string, r leakRequest) (leakAnswer, error) {
	rawURL := base + r.path
	if r.query != "" {
		rawURL += "?" + r.query
	}
	req, err := http.NewRequestWithContext(ctx, r.method, rawURL, nil)
	if err != nil {
		return leakAnswer{}, err
	}
	// url.Parse neither cleans dot segments nor re-encodes a valid path;
	// make sure, since the test is about exact bytes.
	if got := req.URL.EscapedPath(); got != r.path {
		return leakAnswer{}, fmt.Errorf("Go would send path %q for %q", got, r.path)
	}
	req.Header = r.header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		return leakAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRecordedBody))
	if err != nil {
		return leakAnswer{}, err
	}
	return leakAnswer{status: resp.StatusCode, body: body, shared: resp.Header.Get(herd.CoalescedHeader) == "1"}, nil
}
