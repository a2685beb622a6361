package matrix

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

func TestWriteLimitExceeded(t *testing.T) {
	for _, c := range []struct {
		retryAfter time.Duration
		wantMs     int64
		wantHeader string
	}{
		{1500 * time.Millisecond, 1500, "2"},
		{2 * time.Second, 2000, "2"},
		{2*time.Second + time.Nanosecond, 2001, "3"},
		{30 * time.Second, 30000, "30"},
		{time.Millisecond, 1, "1"},
		{time.Nanosecond, 1, "1"},
		{0, 0, "1"},
		{-time.Second, 0, "1"},
	} {
		w := httptest.NewRecorder()
		reason := `too many "full" syncs — try later`
		WriteLimitExceeded(w, reason, c.retryAfter)

		if w.Code != http.StatusTooManyRequests {
			t.Errorf("%v: status %d, want 429", c.retryAfter, w.Code)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%v: Content-Type %q", c.retryAfter, ct)
		}
		if ra := w.Header().Get("Retry-After"); ra != c.wantHeader {
			t.Errorf("%v: Retry-After %q, want %q", c.retryAfter, ra, c.wantHeader)
		}
		if n, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || n < 1 {
			t.Errorf("%v: Retry-After %q is not a whole number of seconds >= 1", c.retryAfter, w.Header().Get("Retry-After"))
		}
		if cl := w.Header().Get("Content-Length"); cl != strconv.Itoa(w.Body.Len()) {
			t.Errorf("%v: Content-Length %q, body has %d bytes", c.retryAfter, cl, w.Body.Len())
		}
		if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%v: Cache-Control %q, want no-store", c.retryAfter, cc)
		}

		// Decode into a map too, to check the exact field names clients read.
		var fields map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &fields); err != nil {
			t.Fatalf("%v: body %q is not JSON: %v", c.retryAfter, w.Body.String(), err)
		}
		if fields["errcode"] != "M_LIMIT_EXCEEDED" {
			t.Errorf("%v: errcode %v", c.retryAfter, fields["errcode"])
		}
		if fields["error"] != reason {
			t.Errorf("%v: error %v, want %q", c.retryAfter, fields["error"], reason)
		}
		if ms, ok := fields["retry_after_ms"].(float64); !ok || int64(ms) != c.wantMs {
			t.Errorf("%v: retry_after_ms %v, want %d", c.retryAfter, fields["retry_after_ms"], c.wantMs)
		}
		if len(fields) != 3 {
			t.Errorf("%v: body has fields %v, want exactly errcode, error, retry_after_ms", c.retryAfter, fields)
		}
	}
}

// The header and the body must agree: a client reading either one waits at
// least as long as the other asks (header rounds up to whole seconds).
func TestLimitExceededHeaderCoversBody(t *testing.T) {
	for ms := int64(1); ms <= 5000; ms += 37 {
		d := time.Duration(ms) * time.Millisecond
		var body LimitExceeded
		if err := json.Unmarshal(LimitExceededBody("x", d), &body); err != nil {
			t.Fatal(err)
		}
		secs, err := strconv.ParseInt(RetryAfterHeader(d), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if secs*1000 < body.RetryAfterMs || (secs-1)*1000 >= body.RetryAfterMs {
			t.Errorf("%v: Retry-After %ds does not round up retry_after_ms %d", d, secs, body.RetryAfterMs)
		}
	}
}
