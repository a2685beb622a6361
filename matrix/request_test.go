package matrix

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestSharedAcrossCredentials(t *testing.T) {
	for _, c := range []struct {
		method, target, auth string
		want                 bool
	}{
		{"GET", "/_matrix/client/versions", "", true},
		{"HEAD", "/_matrix/client/versions", "", true},
		{"GET", "/_matrix/client/versions", "Bearer a", false},
		{"GET", "/_matrix/client/versions?access_token=a", "", false},
		{"GET", "/_matrix/client/versions?%61ccess_token=a", "", false},
		{"GET", "/_matrix/client/versions?x=%zz", "", false},
		{"POST", "/_matrix/client/versions", "", false},
		{"GET", "/_matrix/client/versions/", "", false},
		{"GET", "/_matrix/media/v3/download/example.org/abcDEF_-1", "", true},
		{"GET", "/_matrix/media/r0/download/example.org:8448/abc/cat.png", "", true},
		{"GET", "/_matrix/media/v1/thumbnail/[::1]:8448/abc?width=32&height=32", "", true},
		{"GET", "/_matrix/media/v3/download/example.org/abc", "Bearer a", false},
		{"GET", "/_matrix/client/v1/media/download/example.org/abc", "", false},
		{"GET", "/_matrix/media/v3/preview_url?url=https://a", "", false},
		{"GET", "/_matrix/media/v3/config", "", false},
		{"GET", "/_matrix/media/v3/thumbnail/example.org/abc/extra", "", false},
		{"GET", "/_matrix/media/v3/download/example.org/abc/a%2Fb", "", false},
		{"GET", "/_matrix/media/v3/download/example.org//abc", "", false},
		{"GET", "/_matrix/media/v3/download/example.org/a.b", "", false},
		{"GET", "/_matrix/media/v3/download/../../../client/v3/rooms/!r:x/messages", "", false},
		{"GET", "/_matrix/media/v3/download/x/%2e%2e/%2E%2E/client/v3/rooms/!r:x/messages", "", false},
		{"GET", "/_matrix/media/v3/download/x/y/..", "", false},
	} {
		r := httptest.NewRequest(c.method, c.target, nil)
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		q := ParseRequest(r)
		if got := q.SharedAcrossCredentials(r.Method); got != c.want {
			t.Errorf("%s %s (auth %q): shared %v, want %v", c.method, c.target, c.auth, got, c.want)
		}
	}
}

func TestDotSegments(t *testing.T) {
	for path, want := range map[string]bool{
		"/_matrix/client/v3/sync":                              false,
		"/_matrix/client/v3/rooms/%21a%3Aexample.org/state":    false,
		"/_matrix/client/v3/rooms/!a:example.org/state":        false,
		"/_matrix/media/v3/download/../../client/v3/sync":      true,
		"/_matrix/client/v3/./sync":                            true,
		"/_matrix/client/v3/%2e/sync":                          true,
		"/_matrix/client/v3/%2E%2e/sync":                       true,
		"/_matrix/client/v3/.%2E/sync":                         true,
		"/_matrix/client/v3/sync/..":                           true,
		"/_matrix/client/v3/rooms/!a:x/state/m.custom/...":     false,
		"/_matrix/client/v3/rooms/!a:x/state/m.custom/..x":     false,
		"/_matrix/client/v3/rooms/!a:x/state/m.custom/%2e%2ex": false,
	} {
		if got := hasDotSegment(path); got != want {
			t.Errorf("hasDotSegment(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestParseRequestOnce(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/rooms/%21a%3Ax/state?%61ccess_token=tok", nil)
	q := ParseRequest(r)
	if q.Class != RoomState || q.Room != "%21a%3Ax" || q.RawPath != "/_matrix/client/v3/rooms/%21a%3Ax/state" {
		t.Fatalf("route %+v raw %q", q.Route, q.RawPath)
	}
	if q.Credential.Form != QueryToken || q.Credential.ID != TokenIDOf("tok") {
		t.Fatalf("credential %v id %d", q.Credential, q.Credential.ID)
	}
}

func TestProvesToken(t *testing.T) {
	for target, want := range map[string]bool{
		"/_matrix/client/v3/account/whoami":                    true,
		"/_matrix/client/v3/sync":                              true,
		"/_matrix/client/v3/rooms/%21r%3Ax/messages":           true,
		"/_matrix/client/v3/login":                             false,
		"/_matrix/client/versions":                             false,
		"/_matrix/media/v3/download/x/abc":                     false,
		"/_matrix/client/v3/publicRooms":                       false,
		"/_matrix/client/v3/profile/%40u%3Ax":                  false,
		"/_matrix/client/v3/register/available?username=alice": false,
		"/_matrix/client/r0/account/whoami":                    true,
		// The auth fallback pages answer anyone; this path is not whoami.
		"/_matrix/client/v3/auth/m.login.recaptcha/fallback/web/account/whoami": false,
		"/_matrix/client/v3/account/whoami/":                                    false,
		"/_matrix/client/v3/account%2Fwhoami":                                   false,
	} {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		if q := ParseRequest(r); q.ProvesToken() != want {
			t.Errorf("%s (%s): ProvesToken %v, want %v", target, q.Class, !want, want)
		}
	}
}

func TestEndsSession(t *testing.T) {
	for _, c := range []struct {
		method, target string
		want           bool
	}{
		{http.MethodPost, "/_matrix/client/v3/logout", true},
		{http.MethodPost, "/_matrix/client/r0/logout/all", true},
		{http.MethodPost, "/_matrix/client/v3/logout/", true}, // a trailing slash is the same endpoint
		{http.MethodGet, "/_matrix/client/v3/logout", false},
		{http.MethodPost, "/_matrix/client/v3/login", false},
		{http.MethodPost, "/_matrix/client/v3/rooms/%21r%3Ax/leave", false},
		{http.MethodPut, "/_matrix/client/v3/rooms/%21r%3Ax/send/m.room.message/logout", false},
	} {
		r := httptest.NewRequest(c.method, c.target, nil)
		if q := ParseRequest(r); q.EndsSession(c.method) != c.want {
			t.Errorf("%s %s (%s): EndsSession %v, want %v", c.method, c.target, q.Class, !c.want, c.want)
		}
	}
}
