package herd

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/hsmodel"
	"github.com/mxgate/mxgate/matrix"
)

func keyOf(t *testing.T, method, target string, header map[string]string, shared bool) (Key, bool) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	return keyFor(r, shared)
}

func TestKeyOfRefusesUnsafeRequests(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		header map[string]string
	}{
		{"POST", http.MethodPost, nil},
		{"PUT", http.MethodPut, nil},
		{"range", http.MethodGet, map[string]string{"Range": "bytes=0-10"}},
		{"upgrade", http.MethodGet, map[string]string{"Upgrade": "websocket", "Connection": "Upgrade"}},
	} {
		if _, ok := keyOf(t, tc.method, "/_matrix/client/v3/sync", tc.header, false); ok {
			t.Errorf("%s: coalescable, want refused", tc.name)
		}
	}
	withBody := httptest.NewRequest(http.MethodGet, "/x", strings.NewReader("body"))
	if _, ok := keyFor(withBody, false); ok {
		t.Error("GET with a body: coalescable, want refused")
	}
	chunked := httptest.NewRequest(http.MethodGet, "/x", nil)
	chunked.TransferEncoding = []string{"chunked"}
	if _, ok := keyFor(chunked, false); ok {
		t.Error("GET with Transfer-Encoding: coalescable, want refused")
	}
	if _, ok := keyOf(t, http.MethodHead, "/x", nil, false); !ok {
		t.Error("HEAD refused, want coalescable")
	}
}

func TestKeyOfEquivalences(t *testing.T) {
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	must := func(method, target string, h map[string]string, shared bool) Key {
		k, ok := keyOf(t, method, target, h, shared)
		if !ok {
			t.Fatalf("%s %s refused", method, target)
		}
		return k
	}
	base := must(http.MethodGet, "/_matrix/client/v3/rooms/!a:x/messages?dir=b&limit=10", bearer("t1"), false)

	same := map[string]Key{
		"_cacheBuster ignored":         must(http.MethodGet, "/_matrix/client/v3/rooms/!a:x/messages?dir=b&_cacheBuster=123&limit=10", bearer("t1"), false),
		"encoded _cacheBuster ignored": must(http.MethodGet, "/_matrix/client/v3/rooms/!a:x/messages?dir=b&limit=10&%5FcacheBuster=9", bearer("t1"), false),
	}
	for name, k := range same {
		if k != base {
			t.Errorf("%s: keys differ, want equal", name)
		}
	}
	differ := map[string]Key{
		"other token":           must(http.MethodGet, "/_matrix/client/v3/rooms/!a:x/messages?dir=b&limit=10", bearer("t2"), false),
		"no token":              must(http.MethodGet, "/_matrix/client/v3/rooms/!a:x/messages?dir=b&limit=10", nil, false),
		"other query value":     must(http.MethodGet, "/_matrix/client/v3/rooms/!a:x/messages?dir=b&limit=11", bearer("t1"), false),
		"HEAD":                  must(http.MethodHead, "/_matrix/client/v3/rooms/!a:x/messages?dir=b&limit=10", bearer("t1"), false),
		"other room":            must(http.MethodGet, "/_matrix/client/v3/rooms/!b:x/messages?dir=b&limit=10", bearer("t1"), false),
		"other Accept-Encoding": must(http.MethodGet, "/_matrix/client/v3/rooms/!a:x/messages?dir=b&limit=10", map[string]string{"Authorization": "Bearer t1", "Accept-Encoding": "gzip"}, false),
		"shared":                must(http.MethodGet, "/_matrix/client/v3/rooms/!a:x/messages?dir=b&limit=10", bearer("t1"), true),
		// The same token by header and by query is the same user, but a
		// homeserver may answer the two forms differently (Synapse refuses
		// a header mixed with a query token), so they do not share.
		"token in query":       must(http.MethodGet, "/_matrix/client/v3/rooms/!a:x/messages?dir=b&access_token=t1&limit=10", nil, false),
		"federation signature": must(http.MethodGet, "/_matrix/client/v3/rooms/!a:x/messages?dir=b&limit=10", map[string]string{"Authorization": `X-Matrix origin="a",key="k",sig="s"`}, false),
	}
	for name, k := range differ {
		if k == base {
			t.Errorf("%s: keys equal, want different", name)
		}
	}
	// Raw paths are never decoded: %2F is not /.
	if must(http.MethodGet, "/_matrix/media/v3/download/x/a%2Fb", nil, true) == must(http.MethodGet, "/_matrix/media/v3/download/x/a/b", nil, true) {
		t.Error("%2F and / share a key")
	}
	// Shared keys ignore the token entirely, in header or query.
	if must(http.MethodGet, "/m?w=1", bearer("a"), true) != must(http.MethodGet, "/m?w=1&access_token=b", nil, true) {
		t.Error("shared keys differ by token")
	}
	// Different X-Matrix origins never share.
	if must(http.MethodGet, "/f", map[string]string{"Authorization": `X-Matrix origin="a"`}, false) ==
		must(http.MethodGet, "/f", map[string]string{"Authorization": `X-Matrix origin="b"`}, false) {
		t.Error("federation requests from different servers share a key")
	}
}

// Every spelling of the access_token name is the credential: another user's
// token under an encoded name never shares a key, and the same token under
// any spelling does.
func TestKeyOfDecodesCredentialNames(t *testing.T) {
	const path = "/_matrix/client/v3/rooms/!a:x/state"
	must := func(query string, h map[string]string) Key {
		k, ok := keyOf(t, http.MethodGet, path+"?"+query, h, false)
		if !ok {
			t.Fatalf("%q refused", query)
		}
		return k
	}
	alice := must("access_token=alice", nil)
	for _, q := range []string{"%61ccess_token=alice", "access%5Ftoken=alice", "access%5ftoken=%61lice", "%61%63cess_token=alice"} {
		if must(q, nil) != alice {
			t.Errorf("%q: not alice's key", q)
		}
		bob := strings.Replace(q, "alice", "bob", 1)
		bob = strings.Replace(bob, "%61lice", "bob", 1)
		if must(bob, nil) == alice {
			t.Errorf("%q: bob shares alice's key", bob)
		}
	}
	if must("%61ccess_token=bob", nil) == must("", nil) {
		t.Error("an encoded token shares the anonymous key")
	}
	for _, amb := range []struct {
		query string
		h     map[string]string
	}{
		{"access_token=alice", map[string]string{"Authorization": "Basic YTpi"}},
		{"access_token=alice", map[string]string{"Authorization": "Bearer"}},
		{"%61ccess_token=bob", map[string]string{"Authorization": "Bearer alice"}},
		{"access_token=alice&access%5Ftoken=bob", nil},
		{"access_token=alice&x=%zz", nil},
		{"x=1;access_token=alice", nil},
	} {
		if _, ok := keyOf(t, http.MethodGet, path+"?"+amb.query, amb.h, false); ok {
			t.Errorf("%q %v: coalescable, want refused as ambiguous", amb.query, amb.h)
		}
	}
}

// FuzzKeyOfSeparatesCredentials: whenever a homeserver would attribute two
// requests to different credentials (or one to a credential and the other
// to none), their coalescing keys differ or one of them is not coalesced.
func FuzzKeyOfSeparatesCredentials(f *testing.F) {
	f.Add("Bearer a", "x=1", "", "x=1&access_token=b")
	f.Add("", "%61ccess_token=a", "", "access%5Ftoken=b")
	f.Add("", "access_token=a", "", "")
	f.Add("Basic Zm9v", "access_token=a", "Basic Zm9v", "access_token=b")
	f.Add("", "x=1;access_token=a", "", "x=1;access_token=b")
	f.Add("", "access_token=a+b", "", "access_token=a%20b")
	f.Add("Bearer a", "", "bearer a", "")
	f.Fuzz(func(t *testing.T, authA, queryA, authB, queryB string) {
		build := func(auth, query string) (*http.Request, bool) {
			h, ok := hsmodel.WireHeader(auth)
			return &http.Request{Method: http.MethodGet, Host: "hs", URL: &url.URL{Path: "/_matrix/client/v3/rooms/!r:x/state", RawQuery: query}, Header: h}, ok
		}
		ra, okA := build(authA, queryA)
		rb, okB := build(authB, queryB)
		if !okA || !okB {
			return
		}
		ka, coalescedA := keyFor(ra, false)
		kb, coalescedB := keyFor(rb, false)
		if !coalescedA || !coalescedB || ka != kb {
			return
		}
		for _, m := range hsmodel.Models {
			if a, b := m.Attrib(ra.Header, queryA), m.Attrib(rb.Header, queryB); a != b {
				t.Fatalf("%s attributes (%q, %q) to %+v and (%q, %q) to %+v, yet they share a key", m.Name, authA, queryA, a, authB, queryB, b)
			}
		}
	})
}

func TestKeyedQueryKeepsOtherParametersRaw(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "",
		"since=s1&_cacheBuster=5":          "since=s1",
		"_cacheBuster=5&filter=%7B%7D&x=1": "filter=%7B%7D&x=1",
		"access_token=abc":                 "",
		"%61ccess_token=abc&x=1":           "x=1",
		"x=1&access%5Ftoken=abc":           "x=1",
		"a=%2F&access_token=abc&b=c":       "a=%2F&b=c",
		"cacheBuster=1":                    "cacheBuster=1",
	} {
		if got := keyedQuery(in); got != want {
			t.Errorf("keyedQuery(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkKeyOf(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/rooms/!abcdef:example.org/state?_cacheBuster=1700000000", nil)
	r.Header.Set("Authorization", "Bearer syt_YWxpY2U_abcdefghijklmnopqrst_0123456")
	r.Header.Set("Accept-Encoding", "gzip")
	cred := matrix.ParseCredential(r.Header, r.URL.RawQuery)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := KeyOf(r, cred, false); !ok {
			b.Fatal("refused")
		}
	}
}
