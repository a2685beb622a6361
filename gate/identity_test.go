package gate

import (
	"strconv"
	"testing"

	"github.com/mxgate/mxgate/fleet"
	"github.com/mxgate/mxgate/matrix"
)

func TestAcceptedTokensForgetTheLeastRecentlySeenGeneration(t *testing.T) {
	const host = "hs.example"
	a := newAcceptedTokens()
	if a.has(0, host) {
		t.Fatal("the zero ID (no token) counts as accepted")
	}
	a.record(0, host)
	if n := len(a.cur) + len(a.prev); n != 0 {
		t.Fatalf("recording no token holds %d IDs", n)
	}

	const gen = acceptedTokensMax / 2
	kept, forgotten := matrix.TokenIDOf("kept"), matrix.TokenIDOf("forgotten")
	a.record(kept, host)
	a.record(forgotten, host)
	for i := range 3 * gen {
		a.record(matrix.TokenIDOf("token-"+strconv.Itoa(i)), host)
		if i%(gen/4) == 0 {
			a.record(kept, host) // seen again in every generation
		}
		if n := len(a.cur) + len(a.prev); n > acceptedTokensMax {
			t.Fatalf("after %d tokens the set holds %d IDs, over its bound of %d", i+3, n, acceptedTokensMax)
		}
	}
	if !a.has(kept, host) {
		t.Error("a token seen in every generation was forgotten")
	}
	if a.has(forgotten, host) {
		t.Error("a token not seen for three generations is still held")
	}
	if n := len(a.cur) + len(a.prev); n < gen {
		t.Errorf("the set holds only %d IDs; a full generation is %d", n, gen)
	}
}

// A token is accepted on the Host that accepted it: not on another, and
// once accepted elsewhere, no longer on the first; forgetting it (a 401 or
// a logout anywhere) drops it everywhere.
func TestAcceptedTokensArePerHost(t *testing.T) {
	a := newAcceptedTokens()
	id := matrix.TokenIDOf("tok")
	a.record(id, "a.example")
	if !a.has(id, "a.example") || a.has(id, "b.example") {
		t.Fatal("accepted on a.example: want it counted there only")
	}
	a.record(id, "b.example")
	if a.has(id, "a.example") || !a.has(id, "b.example") {
		t.Fatal("accepted on b.example since: want it counted there only")
	}
	a.forget(id)
	if a.has(id, "b.example") {
		t.Fatal("a forgotten token is still accepted")
	}
}

func TestCanonicalHost(t *testing.T) {
	for in, want := range map[string]string{
		"example.com": "example.com", "Example.COM.": "example.com", "example.com:8448": "example.com",
		"[::1]:8008": "[::1]", "[::1]": "[::1]", "127.0.0.1:80": "127.0.0.1", "": "",
	} {
		if got := canonicalHost(in); got != want {
			t.Errorf("canonicalHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// A token whose session ended is never accepted again, whoever reports a
// 2xx for it afterwards; a forgotten one (a 401) is, at its next 2xx.
func TestEndedTokensStayEnded(t *testing.T) {
	a := newAcceptedTokens()
	ended, refused := matrix.TokenIDOf("ended"), matrix.TokenIDOf("refused")
	a.record(ended, "hs")
	a.record(refused, "hs")
	a.end(ended)
	a.forget(refused)
	if _, changed := a.record(ended, "hs"); changed || a.has(ended, "hs") {
		t.Error("an ended session was accepted again")
	}
	if a.apply(fleet.TokenVerdict{Token: ended, Host: hostHash("hs")}); a.has(ended, "hs") {
		t.Error("another gateway's verdict revived an ended session")
	}
	if _, changed := a.record(refused, "hs"); !changed || !a.has(refused, "hs") {
		t.Error("a token refused once was not accepted at its next 2xx")
	}
}
