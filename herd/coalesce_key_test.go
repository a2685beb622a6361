package herd

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func keyOf(t *testing.T, method, target string, header map[string]string, shared bool) (Key, bool) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	return KeyOf(r, shared)
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
	if _, ok := KeyOf(withBody, false); ok {
		t.Error("GET with a body: coalescable, want refused")
	}
	chunked := httptest.NewRequest(http.MethodGet, "/x", nil)
	chunked.TransferEncoding = []string{"chunked"}
	if _, ok := KeyOf(chunked, false); ok {
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
		"token in query = in header":   must(http.MethodGet, "/_matrix/client/v3/rooms/!a:x/messages?dir=b&access_token=t1&limit=10", nil, false),
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
		"federation signature":  must(http.MethodGet, "/_matrix/client/v3/rooms/!a:x/messages?dir=b&limit=10", map[string]string{"Authorization": `X-Matrix origin="a",key="k",sig="s"`}, false),
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

func TestKeyedQueryKeepsOtherParametersRaw(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "",
		"since=s1&_cacheBuster=5":          "since=s1",
		"_cacheBuster=5&filter=%7B%7D&x=1": "filter=%7B%7D&x=1",
		"access_token=abc":                 "",
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
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := KeyOf(r, false); !ok {
			b.Fatal("refused")
		}
	}
}
