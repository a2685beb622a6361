// Package hsmodel models how real homeservers decide who sent a request,
// independently of mxgate's own parser, so that tests can check mxgate
// against them. Each model returns the credential a homeserver would
// authenticate ("" for none) and whether it would refuse the request's
// credential outright. Only tests import it.
package hsmodel

import (
	"net/http"
	"net/url"
	"strings"
)

// Attribution is who a homeserver thinks is asking.
type Attribution struct {
	Token   string // the access token it authenticates; "" with Present false: anonymous
	Present bool   // a token was found (it may be empty)
	Refused bool   // the credential is malformed: the homeserver answers 401
}

// Model is one homeserver's reading of a request's credential.
type Model struct {
	Name   string
	Attrib func(h http.Header, rawQuery string) Attribution
}

// Models are the readings mxgate must agree with.
var Models = []Model{
	{"dendrite", Dendrite},
	{"synapse", Synapse},
	{"query-first", QueryFirst},
}

// Dendrite reads the first Authorization header ("Bearer" exactly, one
// space) and otherwise the first access_token of net/url's ParseQuery
// (which drops pairs with bad escapes or a ';').
func Dendrite(h http.Header, rawQuery string) Attribution {
	if auth := h.Get("Authorization"); auth != "" {
		parts := strings.SplitN(auth, " ", 2)
		if len(parts) != 2 || parts[0] != "Bearer" {
			return Attribution{Refused: true}
		}
		return Attribution{Token: parts[1], Present: true}
	}
	q, _ := url.ParseQuery(rawQuery)
	if tok := q.Get("access_token"); tok != "" {
		return Attribution{Token: tok, Present: true}
	}
	return Attribution{}
}

// Synapse refuses several Authorization headers, a header that is not
// "Bearer <token>", and a header mixed with an access_token parameter; it
// reads the query as Twisted does (split at '&' and ';', '+' a space,
// escapes decoded where valid and kept as they are where not).
func Synapse(h http.Header, rawQuery string) Attribution {
	tokens := twistedArgs(rawQuery)["access_token"]
	if auth, ok := h["Authorization"]; ok {
		if len(auth) != 1 {
			return Attribution{Refused: true}
		}
		parts := strings.Split(auth[0], " ")
		if len(parts) != 2 || parts[0] != "Bearer" || len(tokens) > 0 {
			return Attribution{Refused: true}
		}
		return Attribution{Token: parts[1], Present: true}
	}
	if len(tokens) > 0 {
		return Attribution{Token: tokens[0], Present: true}
	}
	return Attribution{}
}

// QueryFirst is a server that prefers the query token over the header (as
// Conduit-style servers may) and takes the last occurrence.
func QueryFirst(h http.Header, rawQuery string) Attribution {
	q, _ := url.ParseQuery(rawQuery)
	if vs := q["access_token"]; len(vs) > 0 {
		return Attribution{Token: vs[len(vs)-1], Present: true}
	}
	if auth := h.Get("Authorization"); auth != "" {
		scheme, tok, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "bearer") || tok == "" {
			return Attribution{Refused: true}
		}
		return Attribution{Token: tok, Present: true}
	}
	return Attribution{}
}

// twistedArgs parses a query the way twisted.web.http.parse_qs does with
// keep_blank_values: items split at '&' and ';', an item without '=' is
// skipped, names and values unquoted leniently.
func twistedArgs(rawQuery string) map[string][]string {
	args := map[string][]string{}
	for s1 := range strings.SplitSeq(rawQuery, "&") {
		for item := range strings.SplitSeq(s1, ";") {
			k, v, ok := strings.Cut(item, "=")
			if !ok {
				continue
			}
			k, v = lenientUnquote(k), lenientUnquote(v)
			args[k] = append(args[k], v)
		}
	}
	return args
}

// lenientUnquote is Python's unquote_to_bytes after replacing '+': valid
// %XX escapes become bytes, anything else stays as written.
func lenientUnquote(s string) string {
	s = strings.ReplaceAll(s, "+", " ")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

// WireHeader is the header a server sees for an Authorization value a
// client sent (none for ""): HTTP parsers drop the blanks around a field
// value. ok is false for a value no real request can carry (control
// characters other than tab), which fuzz tests skip.
func WireHeader(auth string) (h http.Header, ok bool) {
	h = http.Header{}
	for i := 0; i < len(auth); i++ {
		if c := auth[i]; c < ' ' && c != '\t' || c == 0x7f {
			return nil, false
		}
	}
	if auth = strings.Trim(auth, " \t"); auth != "" {
		h.Set("Authorization", auth)
	}
	return h, true
}
