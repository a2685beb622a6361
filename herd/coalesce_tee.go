package herd

import (
	"errors"
	"net/http"
	"strconv"
	"time"
)

// teeWriter is the ResponseWriter handed to the leader's fetch. It streams
// every write and flush straight through to the leader's client (nothing is
// held back) and, while the answer may still be shared, records it up to
// MaxBodyBytes within the Coalescer's byte budget.
//
// fetch writes into the client's own header map, so that the answer's
// headers are not built twice. Headers the outer middleware set on the
// leader's writer before the fetch are moved aside until WriteHeader: the
// recorded answer holds only what fetch set, so they are never replayed to
// others. At WriteHeader they come back wherever fetch did not set the same
// field (fetch's value wins, as for any handler writing a header); a fetch
// that ends without an answer leaves the header map as it found it.
//
// teeWriter is used by the fetch's goroutine only, like any ResponseWriter.
type teeWriter struct {
	c      *Coalescer
	key    Key
	g      *group
	ttl    time.Duration // how long a cacheable answer is kept
	client http.ResponseWriter
	header http.Header // the client's
	outer  []headerField
	inline [4]headerField // outer's storage for the usual few fields

	wroteHeader bool
	status      int
	clientErr   error // first error writing to the leader's client
	recording   bool  // the answer is still shareable and being recorded
	recorded    http.Header
	headLength  string // a HEAD answer's Content-Length, recorded
	declared    int64  // the recorded answer's Content-Length, -1 if none
	body        []byte
	reserved    int64 // the body's capacity, charged to the budget
}

// headerField is one header field moved aside from the client's map.
type headerField struct {
	name   string
	values []string
}

// maxPrealloc bounds the body buffer allocated from Content-Length at once;
// a larger body grows it as its bytes arrive.
const maxPrealloc = 1 << 20

func newTeeWriter(c *Coalescer, key Key, g *group, ttl time.Duration, client http.ResponseWriter) *teeWriter {
	t := &teeWriter{c: c, key: key, g: g, ttl: ttl, client: client, header: client.Header(), declared: -1}
	t.outer = t.inline[:0]
	for name, values := range t.header {
		t.outer = append(t.outer, headerField{name, values})
	}
	clear(t.header)
	return t
}

// restoreOuter puts the outer middleware's header fields back, except where
// fetch set the same field.
func (t *teeWriter) restoreOuter() {
	for _, f := range t.outer {
		if _, set := t.header[f.name]; !set {
			t.header[f.name] = f.values
		}
	}
	t.outer = nil
}

// abandonHeader gives the client's header map back as the fetch found it,
// for a fetch that ended without writing an answer: whatever the caller
// writes instead (a refusal, an error) must not carry the fetch's fields.
func (t *teeWriter) abandonHeader() {
	clear(t.header)
	t.restoreOuter()
}

// Header returns the header map fetch fills in: the client's.
func (t *teeWriter) Header() http.Header { return t.header }

// WriteHeader decides whether the answer can be shared, then forwards the
// status and headers to the leader's client. Informational (1xx) statuses
// are dropped: the final status follows, and a Matrix GET has no use for
// 100 Continue or 103 Early Hints.
func (t *teeWriter) WriteHeader(code int) {
	if t.wroteHeader || (code >= 100 && code < 200 && code != http.StatusSwitchingProtocols) {
		return
	}
	t.wroteHeader = true
	t.status = code
	t.recording = code != http.StatusSwitchingProtocols &&
		shareable(t.header, t.key.shared, t.c.cfg.ShareNoStoreInFlight)
	if t.recording && !cacheableAnswer(code, t.header, t.ttl) && t.c.releaseIfAlone(t.key, t.g) {
		// Nobody waits and the answer will not be kept: a copy would serve
		// no one (Synapse's no-store answers, most of the time).
		t.recording = false
	}
	if t.recording {
		if n, err := strconv.ParseInt(t.header.Get("Content-Length"), 10, 64); err == nil {
			t.declared = n
			if n > t.c.cfg.MaxBodyBytes {
				t.recording = false
			} else if n > 0 {
				// Size the buffer for the whole body (so that it is
				// allocated once), up to maxPrealloc, charged up front.
				t.grow(int(min(n, maxPrealloc)))
			}
		}
	}
	if t.recording {
		t.recorded = replayableHeader(t.header)
		t.headLength = t.header.Get("Content-Length")
	} else {
		t.c.giveUp(t.key, t.g) // no-op if released above
	}
	t.restoreOuter()
	t.client.WriteHeader(code)
}

// Write sends p to the leader's client and records it. After the client
// failed, writes keep succeeding while the answer is still recorded for the
// waiters; once nobody needs the bytes, the client's error is returned so the
// fetch stops reading from the upstream.
func (t *teeWriter) Write(p []byte) (int, error) {
	if !t.wroteHeader {
		t.WriteHeader(http.StatusOK)
	}
	if t.clientErr == nil {
		if _, err := t.client.Write(p); err != nil {
			t.clientErr = err
		}
	}
	if t.recording {
		t.record(p)
	}
	if t.clientErr != nil && !t.recording {
		return 0, t.clientErr
	}
	return len(p), nil
}

// record appends p to the recorded body, or stops recording (and sends the
// waiters upstream) when the body would pass MaxBodyBytes or the budget.
func (t *teeWriter) record(p []byte) {
	need := len(t.body) + len(p)
	if int64(need) > t.c.cfg.MaxBodyBytes {
		t.stopRecording()
		t.c.giveUp(t.key, t.g)
		return
	}
	if need > cap(t.body) {
		// Double, as append would, but charge the capacity before
		// allocating it.
		t.grow(int(min(max(need, 2*cap(t.body)), int(t.c.cfg.MaxBodyBytes))))
		if !t.recording {
			return
		}
	}
	t.body = append(t.body, p...)
}

// grow reallocates the body buffer with capacity n, charging the difference
// to the budget; if the budget has no room, recording stops.
func (t *teeWriter) grow(n int) {
	if !t.c.reserve(int64(n - cap(t.body))) {
		t.stopRecording()
		t.c.giveUp(t.key, t.g)
		return
	}
	t.reserved += int64(n - cap(t.body))
	body := make([]byte, len(t.body), n)
	copy(body, t.body)
	t.body = body
}

// recordedBody returns the complete recorded body, trimmed to its length
// when doubling left more than an eighth of it unused (a body that came
// without Content-Length), with the charge adjusted to match.
func (t *teeWriter) recordedBody() []byte {
	if spare := cap(t.body) - len(t.body); spare > len(t.body)/8 {
		t.body = append([]byte(nil), t.body...)
		t.c.unreserve(int64(spare))
		t.reserved -= int64(spare)
	}
	return t.body
}

// cutShort reports a recorded body that ended short of (or past) its
// Content-Length: a proxy that loses the upstream mid-body may end without
// an error. A HEAD answer, a 204 and a 304 have no body to compare.
func (t *teeWriter) cutShort(method string) bool {
	bodyless := method == http.MethodHead || !bodyAllowed(t.status)
	return t.recording && !bodyless && t.declared >= 0 && int64(len(t.body)) != t.declared
}

// stopRecording drops the recorded body and returns its bytes to the budget.
func (t *teeWriter) stopRecording() {
	t.recording = false
	t.recorded = nil
	t.body = nil
	if t.reserved > 0 {
		t.c.unreserve(t.reserved)
		t.reserved = 0
	}
}

// Flush sends buffered data to the leader's client at once (streaming
// responses, ReverseProxy's FlushInterval). Flush also commits the headers.
func (t *teeWriter) Flush() {
	if !t.wroteHeader {
		t.WriteHeader(http.StatusOK)
	}
	if t.clientErr != nil {
		return
	}
	if err := http.NewResponseController(t.client).Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		t.clientErr = err
	}
}
