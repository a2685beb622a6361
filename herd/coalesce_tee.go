package herd

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// teeWriter is the ResponseWriter handed to the leader's fetch. It streams
// every write and flush straight through to the leader's client (nothing is
// held back) and, while the answer may still be shared, records it up to
// MaxBodyBytes within the Coalescer's byte budget.
//
// fetch writes into teeWriter's own header map; it is copied to the client at
// WriteHeader. That keeps headers the outer middleware set on the leader's
// writer out of the recorded answer, so they are not replayed to others.
//
// teeWriter is used by the fetch's goroutine only, like any ResponseWriter.
type teeWriter struct {
	c      *Coalescer
	key    Key
	g      *group
	client http.ResponseWriter
	header http.Header

	wroteHeader  bool
	status       int
	clientErr    error // first error writing to the leader's client
	recording    bool  // the answer is still shareable and being recorded
	body         []byte
	reserved     int64 // bytes of body charged to the budget
	trailerNames []string
}

// maxPrealloc bounds the body buffer allocated from Content-Length before
// any byte of it has been charged to the budget.
const maxPrealloc = 1 << 20

func newTeeWriter(c *Coalescer, key Key, g *group, client http.ResponseWriter) *teeWriter {
	return &teeWriter{c: c, key: key, g: g, client: client, header: make(http.Header)}
}

// Header returns the header map fetch fills in.
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
	if t.recording {
		if n, err := strconv.ParseInt(t.header.Get("Content-Length"), 10, 64); err == nil {
			if n > t.c.cfg.MaxBodyBytes {
				t.recording = false
			} else {
				// Size the buffer for the whole body, but never allocate
				// ahead of the budget by more than maxPrealloc.
				t.body = make([]byte, 0, min(n, maxPrealloc))
			}
		}
	}
	if !t.recording {
		t.c.giveUp(t.key, t.g)
	}
	for _, v := range t.header.Values("Trailer") {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				t.trailerNames = append(t.trailerNames, http.CanonicalHeaderKey(name))
			}
		}
	}
	dst := t.client.Header()
	for k, vs := range t.header {
		dst[k] = vs
	}
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
	n := int64(len(p))
	if int64(len(t.body))+n > t.c.cfg.MaxBodyBytes || !t.c.reserve(n) {
		t.stopRecording()
		t.c.giveUp(t.key, t.g)
		return
	}
	t.reserved += n
	t.body = append(t.body, p...)
}

// stopRecording drops the recorded body and returns its bytes to the budget.
func (t *teeWriter) stopRecording() {
	t.recording = false
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

// forwardTrailers copies trailer values fetch set after the body to the
// leader's client, where net/http sends them. (Responses with trailers are
// never shared, so only the leader's client needs them.)
func (t *teeWriter) forwardTrailers() {
	dst := t.client.Header()
	for k, vs := range t.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			dst[k] = vs
		}
	}
	for _, name := range t.trailerNames {
		if vs, ok := t.header[name]; ok {
			dst[name] = vs
		}
	}
}
