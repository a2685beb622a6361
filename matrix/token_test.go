package matrix

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// tokenRequest builds a request with the given Authorization header (none if
// empty) and raw query, without going through URL parsing, so that any bytes
// can be tried.
func tokenRequest(authorization, rawQuery string) *http.Request {
	r := &http.Request{Method: "GET", URL: &url.URL{Path: "/_matrix/client/v3/sync", RawQuery: rawQuery}, Header: http.Header{}}
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r
}

func TestAccessToken(t *testing.T) {
	for _, c := range []struct {
		name, authorization, query, want string
	}{
		{"bearer", "Bearer syt_abc", "", "syt_abc"},
		{"lower-case scheme", "bearer syt_abc", "", "syt_abc"},
		{"upper-case scheme", "BEARER syt_abc", "", "syt_abc"},
		{"mixed-case scheme", "BeArEr syt_abc", "", "syt_abc"},
		{"surrounding spaces trimmed", "Bearer   syt_abc  ", "", "syt_abc"},
		{"query fallback", "", "access_token=syt_q", "syt_q"},
		{"query fallback among others", "", "since=s1&access_token=syt_q&timeout=0", "syt_q"},
		{"query fallback decoded", "", "access_token=a%2Bb%3D", "a+b="},
		{"query first occurrence", "", "access_token=one&access_token=two", "one"},
		{"header takes precedence", "Bearer syt_h", "access_token=syt_q", "syt_h"},
		{"malformed scheme", "Basic dXNlcjpwYXNz", "", ""},
		{"malformed header hides query", "Basic dXNlcjpwYXNz", "access_token=syt_q", ""},
		{"scheme only", "Bearer", "", ""},
		{"scheme and space only", "Bearer ", "", ""},
		{"scheme and blanks only", "Bearer    ", "", ""},
		{"no separator", "Bearersyt_abc", "", ""},
		{"no token anywhere", "", "since=s1", ""},
		{"similar query key", "", "xaccess_token=syt_q", ""},
		{"empty query token", "", "access_token=", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := AccessToken(tokenRequest(c.authorization, c.query)); got != c.want {
				t.Errorf("AccessToken(Authorization %q, query %q) = %q, want %q", c.authorization, c.query, got, c.want)
			}
		})
	}
}

func TestAccessTokenWithoutURL(t *testing.T) {
	r := &http.Request{Header: http.Header{}}
	if got := AccessToken(r); got != "" {
		t.Errorf("AccessToken(no URL, no header) = %q, want empty", got)
	}
	r.Header.Set("Authorization", "Bearer tok")
	if got := AccessToken(r); got != "tok" {
		t.Errorf("AccessToken(no URL, bearer) = %q, want tok", got)
	}
}

func TestIDOf(t *testing.T) {
	if IDOf("") != 0 {
		t.Fatalf("IDOf(\"\") = %d, want 0", IDOf(""))
	}
	const n = 20000
	seen := make(map[TokenID]string, n)
	for i := range n {
		tok := fmt.Sprintf("syt_dXNlcg_%d", i)
		id := IDOf(tok)
		if id == 0 {
			t.Fatalf("IDOf(%q) = 0", tok)
		}
		if again := IDOf(tok); again != id {
			t.Fatalf("IDOf(%q) not stable: %d then %d", tok, id, again)
		}
		if other, dup := seen[id]; dup {
			t.Fatalf("IDOf(%q) == IDOf(%q) == %d", tok, other, id)
		}
		seen[id] = tok
	}
	// Tokens that differ only slightly still get different IDs.
	if IDOf("a") == IDOf("b") || IDOf("token") == IDOf("token ") || IDOf("x") == IDOf("X") {
		t.Error("near-identical tokens share an ID")
	}
}

func FuzzAccessToken(f *testing.F) {
	f.Add("Bearer syt_abc", "")
	f.Add("bearer  x ", "access_token=y")
	f.Add("", "access_token=a%2Bb&access_token=c")
	f.Add("", "access_token=%zz&access_token=ok")
	f.Add("Basic abc", "access_token=y")
	f.Add("Bearer", ";;access_token=&")
	f.Fuzz(func(t *testing.T, authorization, rawQuery string) {
		got := AccessToken(tokenRequest(authorization, rawQuery))
		if (IDOf(got) == 0) != (got == "") {
			t.Fatalf("IDOf(%q) = %d", got, IDOf(got))
		}
		// http.Header.Get returns the value as set; Set stores it as given.
		if authorization != "" {
			// The header alone decides; the query is never consulted.
			if alone := AccessToken(tokenRequest(authorization, "")); got != alone {
				t.Fatalf("query changed the result with a header present: %q vs %q", got, alone)
			}
			if !strings.Contains(authorization, got) {
				t.Fatalf("token %q is not part of the header %q", got, authorization)
			}
			if got != strings.TrimSpace(got) {
				t.Fatalf("token %q has surrounding space", got)
			}
			if got != "" && !strings.EqualFold(authorization[:7], "bearer ") {
				t.Fatalf("token %q from a non-bearer header %q", got, authorization)
			}
			return
		}
		values, _ := url.ParseQuery(rawQuery)
		if want := values.Get("access_token"); got != want {
			t.Fatalf("AccessToken(query %q) = %q, want %q", rawQuery, got, want)
		}
	})
}
