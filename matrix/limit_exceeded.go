package matrix

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// ErrLimitExceeded is the Matrix error code for "too many requests".
const ErrLimitExceeded = "M_LIMIT_EXCEEDED"

// LimitExceeded is the body of a Matrix 429 answer.
type LimitExceeded struct {
	ErrCode      string `json:"errcode"`
	Error        string `json:"error"`
	RetryAfterMs int64  `json:"retry_after_ms"`
}

// LimitExceededBody returns the JSON body of a 429 with the given reason.
// retryAfter is rounded up to whole milliseconds.
func LimitExceededBody(reason string, retryAfter time.Duration) []byte {
	b, _ := json.Marshal(LimitExceeded{ErrCode: ErrLimitExceeded, Error: reason, RetryAfterMs: ceilDiv(retryAfter, time.Millisecond)})
	return b
}

// RetryAfterHeader is the Retry-After header value for retryAfter: whole
// seconds, rounded up, never 0 (a client reading 0 would retry at once).
func RetryAfterHeader(retryAfter time.Duration) string {
	s := ceilDiv(retryAfter, time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// SetLimitExceededHeaders sets the headers of a Matrix 429 answer. Element's
// mobile clients read only the body's retry_after_ms, mautrix-go only the
// Retry-After header: both are always set.
func SetLimitExceededHeaders(h http.Header, retryAfter time.Duration) {
	h.Set("Content-Type", "application/json")
	h.Set("Retry-After", RetryAfterHeader(retryAfter))
	h.Set("Cache-Control", "no-store")
}

// WriteLimitExceeded writes a complete Matrix 429 answer.
func WriteLimitExceeded(w http.ResponseWriter, reason string, retryAfter time.Duration) {
	body := LimitExceededBody(reason, retryAfter)
	SetLimitExceededHeaders(w.Header(), retryAfter)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(body)
}

func ceilDiv(d, unit time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + unit - 1) / unit)
}
