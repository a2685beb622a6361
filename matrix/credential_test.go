package matrix

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/hsmodel"
)

func header(authorization ...string) http.Header {
	h := http.Header{}
	for _, a := range authorization {
		h.Add("Authorization", a)
	}
	return h
}

func TestParseCredential(t *testing.T) {
	for _, c := range []struct {
		name      string
		auth      []string
		query     string
		form      CredentialForm
		ambiguous bool
		token     string // the token the ID must be of, when not ambiguous
	}{
		{"anonymous", nil, "since=s1", NoCredential, false, ""},
		{"bearer", []string{"Bearer syt_abc"}, "", BearerHeader, false, "syt_abc"},
		{"lower-case scheme", []string{"bearer syt_abc"}, "", BearerHeader, false, "syt_abc"},
		{"upper-case scheme", []string{"BEARER syt_abc"}, "", BearerHeader, false, "syt_abc"},
		{"extra spaces", []string{"Bearer   syt_abc"}, "", OtherAuthorization, false, ""},
		{"query", nil, "access_token=syt_q", QueryToken, false, "syt_q"},
		{"query among others", nil, "since=s1&access_token=syt_q&timeout=0", QueryToken, false, "syt_q"},
		{"query value decoded", nil, "access_token=a%2Bb%3D", QueryToken, false, "a+b="},
		{"query plus is space", nil, "access_token=a+b", QueryToken, false, "a b"},
		{"encoded name", nil, "%61ccess_token=syt_q", QueryToken, false, "syt_q"},
		{"encoded underscore", nil, "access%5Ftoken=syt_q", QueryToken, false, "syt_q"},
		{"fully encoded name", nil, "%61%63%63%65%73%73%5f%74%6f%6b%65%6e=syt_q", QueryToken, false, "syt_q"},
		{"same token twice", nil, "access_token=a&%61ccess_token=a", QueryToken, false, "a"},
		{"two query tokens", nil, "access_token=one&access_token=two", QueryToken, true, ""},
		{"plain and encoded differ", nil, "access_token=one&%61ccess_token=two", QueryToken, true, ""},
		{"header and same query", []string{"Bearer syt_h"}, "access_token=syt_h", BearerAndQuery, false, "syt_h"},
		{"header and other query", []string{"Bearer syt_h"}, "access_token=syt_q", BearerAndQuery, true, ""},
		{"header and encoded other query", []string{"Bearer syt_h"}, "%61ccess_token=syt_q", BearerAndQuery, true, ""},
		{"basic header", []string{"Basic dXNlcjpwYXNz"}, "", OtherAuthorization, false, ""},
		{"basic header and query", []string{"Basic dXNlcjpwYXNz"}, "access_token=syt_q", OtherAuthorization, true, ""},
		{"bare bearer and query", []string{"Bearer"}, "access_token=syt_q", OtherAuthorization, true, ""},
		{"bearer and blanks", []string{"Bearer    "}, "", OtherAuthorization, false, ""},
		{"token with a space", []string{"Bearer a b"}, "", OtherAuthorization, false, ""},
		{"no separator", []string{"Bearersyt_abc"}, "", OtherAuthorization, false, ""},
		{"federation", []string{`X-Matrix origin="a.org",key="ed25519:1",sig="x"`}, "", OtherAuthorization, false, ""},
		{"two headers", []string{"Bearer a", "Bearer a"}, "", NoCredential, true, ""},
		{"malformed escape elsewhere", nil, "since=%zz", NoCredential, true, ""},
		{"malformed escape in the token", nil, "access_token=a%2", NoCredential, true, ""},
		{"malformed escape next to a token", []string{"Bearer a"}, "x=%", BearerHeader, true, ""},
		{"token behind a semicolon", nil, "x=1;access_token=b", NoCredential, true, ""},
		{"semicolon in the token", nil, "access_token=a;b", QueryToken, true, ""},
		{"encoded token behind a semicolon", nil, "x=1;%61ccess_token=b", NoCredential, true, ""},
		{"similar name", nil, "xaccess_token=syt_q", NoCredential, false, ""},
		{"empty query token", nil, "access_token=", QueryToken, false, ""},
		{"name only", nil, "access_token", QueryToken, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ParseCredential(header(c.auth...), c.query)
			if got.Form != c.form || got.Ambiguous != c.ambiguous {
				t.Fatalf("form %v ambiguous %v, want %v %v", got.Form, got.Ambiguous, c.form, c.ambiguous)
			}
			switch {
			case got.Ambiguous || got.Form == NoCredential || got.Form == OtherAuthorization:
				if got.ID != 0 {
					t.Errorf("ID %d, want 0", got.ID)
				}
			case got.ID != TokenIDOf(c.token):
				t.Errorf("ID %d is not the ID of %q", got.ID, c.token)
			}
			if got.Anonymous() != (c.form == NoCredential && !c.ambiguous) {
				t.Errorf("Anonymous() = %v", got.Anonymous())
			}
		})
	}
}

// The same token in the header, the query or an encoded query name is one
// user for rate buckets and herds.
func TestCredentialIDSameAcrossForms(t *testing.T) {
	want := ParseCredential(header("Bearer syt_x"), "").ID
	for _, q := range []string{"access_token=syt_x", "%61ccess_token=syt_x", "access%5Ftoken=syt_%78"} {
		if got := ParseCredential(http.Header{}, q).ID; got != want {
			t.Errorf("query %q: ID %d, header gives %d", q, got, want)
		}
	}
	if ParseCredential(http.Header{}, "access_token=").ID == 0 {
		t.Error("an empty token must still be a credential, not nobody")
	}
}

// A Credential never prints its token, whatever prints it.
func TestCredentialNeverPrintsToken(t *testing.T) {
	const secret = "syt_SECRET_token"
	for _, c := range []Credential{
		ParseCredential(header("Bearer "+secret), ""),
		ParseCredential(http.Header{}, "access_token="+secret),
		ParseCredential(header("Basic "+secret), "access_token="+secret),
	} {
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "cred", c)
		out := fmt.Sprintf("%v %+v %#v %s", c, c, c, c) + buf.String()
		if strings.Contains(out, secret) || strings.Contains(out, "SECRET") {
			t.Fatalf("token printed: %s", out)
		}
	}
}

// A token whose bytes spell a client address never lands in that address's
// rate bucket.
func TestTokenAndClientIPIDsNeverMeet(t *testing.T) {
	for _, ip := range []string{"192.0.2.1", "::1", ""} {
		for _, tok := range []string{ip, "ip:" + ip, "\x00ip\x00" + ip, "\x00token\x00\x00ip\x00" + ip} {
			if TokenIDOf(tok) == ClientIPID(ip) {
				t.Errorf("token %q has the ID of client address %q", tok, ip)
			}
			if ParseCredential(header("Bearer "+tok), "").ID == ClientIPID(ip) && tok != "" {
				t.Errorf("bearer %q has the ID of client address %q", tok, ip)
			}
		}
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
	if IDOf("a") == IDOf("b") || IDOf("token") == IDOf("token ") || IDOf("x") == IDOf("X") {
		t.Error("near-identical tokens share an ID")
	}
}

// FuzzCredentialAgreesWithHomeservers: whenever two requests give the same
// key material and neither is ambiguous, every homeserver model attributes
// them to the same credential; a request that is not ambiguous is read by
// every model as carrying the parsed token (or refused).
func FuzzCredentialAgreesWithHomeservers(f *testing.F) {
	f.Add("Bearer a", "", "", "access_token=a")
	f.Add("", "access_token=a", "", "%61ccess_token=b")
	f.Add("", "access%5Ftoken=a", "", "")
	f.Add("Basic x", "access_token=a", "Basic x", "")
	f.Add("Bearer", "access_token=a", "", "access_token=a")
	f.Add("", "x=1;access_token=a", "", "x=1")
	f.Add("", "access_token=a%zz", "", "access_token=a")
	f.Add("bearer a", "", "Bearer a", "")
	f.Fuzz(func(t *testing.T, authA, queryA, authB, queryB string) {
		ha, okA := hsmodel.WireHeader(authA)
		hb, okB := hsmodel.WireHeader(authB)
		if !okA || !okB {
			return
		}
		ca, cb := ParseCredential(ha, queryA), ParseCredential(hb, queryB)
		for _, pair := range []struct {
			h http.Header
			q string
			c Credential
		}{{ha, queryA, ca}, {hb, queryB, cb}} {
			if pair.c.Ambiguous {
				continue
			}
			for _, m := range hsmodel.Models {
				a := m.Attrib(pair.h, pair.q)
				if a.Refused {
					continue
				}
				switch pair.c.Form {
				case NoCredential:
					if a.Present {
						t.Fatalf("%s finds a token in (%q, %q), mxgate finds none", m.Name, authA, pair.q)
					}
				case BearerHeader, QueryToken, BearerAndQuery:
					if a.Present && a.Token != pair.c.token {
						t.Fatalf("%s reads token %q from (%v, %q), mxgate %q", m.Name, a.Token, pair.h, pair.q, pair.c.token)
					}
				}
			}
		}
		if ca.Ambiguous || cb.Ambiguous {
			return
		}
		if !bytes.Equal(ca.AppendKey(nil), cb.AppendKey(nil)) {
			return
		}
		for _, m := range hsmodel.Models {
			if a, b := m.Attrib(ha, queryA), m.Attrib(hb, queryB); a != b {
				t.Fatalf("%s: (%q, %q) is %+v but (%q, %q) is %+v, with equal key material", m.Name, authA, queryA, a, authB, queryB, b)
			}
		}
	})
}
