package simclient

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// Family is the client SDK a simulated client models: what it reads from a
// 429 and what it does after a failed request. Each is taken from the SDK's
// source (the README's "Clients and 429s" has the table).
type Family uint8

const (
	// FamilyGeneric reads retry_after_ms, else Retry-After, and backs off
	// exponentially otherwise: the bench's original mobile client.
	FamilyGeneric Family = iota
	// FamilyJSSDK is matrix-js-sdk (Element Web, Element Desktop). Its
	// /sync loop ignores a 429's delay: after any /sync error it waits
	// 2-7 s, polls /versions (again every 5-10 s while that fails), then
	// retries. Other requests (its scheduler) honour Retry-After, else
	// retry_after_ms.
	FamilyJSSDK
	// FamilyElementX is matrix-rust-sdk (Element X): Retry-After in
	// seconds (not an HTTP date), else retry_after_ms, and only for an
	// M_LIMIT_EXCEEDED JSON body; otherwise exponential backoff.
	FamilyElementX
	// FamilyElementAndroid is the legacy Element Android SDK: only the
	// body's retry_after_ms.
	FamilyElementAndroid
	// FamilyIOS is the legacy matrix-ios-sdk: only retry_after_ms, and it
	// gives up on a request once its retries would wait past 20 s in all.
	FamilyIOS
	// FamilyMautrix is mautrix-go (bots, bridges): only the Retry-After
	// header.
	FamilyMautrix
)

// iosRetryBudget is how long matrix-ios-sdk waits over all the retries of
// one request before it gives up.
const iosRetryBudget = 20 * time.Second

func (f Family) String() string {
	switch f {
	case FamilyJSSDK:
		return "js-sdk"
	case FamilyElementX:
		return "element-x"
	case FamilyElementAndroid:
		return "element-android"
	case FamilyIOS:
		return "matrix-ios-sdk"
	case FamilyMautrix:
		return "mautrix-go"
	}
	return "generic"
}

// retryAfter is the delay a client of family f reads from a 429 with the
// given Retry-After header and body (its first bytes); 0 means it found
// none and falls back to its own backoff.
func (f Family) retryAfter(header string, body []byte) time.Duration {
	var le matrix.LimitExceeded
	isLimit := json.Unmarshal(body, &le) == nil && le.ErrCode == matrix.ErrLimitExceeded
	fromBody := time.Duration(0)
	if isLimit && le.RetryAfterMs > 0 {
		fromBody = time.Duration(le.RetryAfterMs) * time.Millisecond
	}
	fromHeader := time.Duration(0)
	if s, err := strconv.Atoi(strings.TrimSpace(header)); err == nil && s > 0 {
		fromHeader = time.Duration(s) * time.Second
	}
	switch f {
	case FamilyJSSDK:
		return firstSet(fromHeader, fromBody)
	case FamilyElementX:
		if !isLimit {
			return 0
		}
		return firstSet(fromHeader, fromBody)
	case FamilyElementAndroid, FamilyIOS:
		return fromBody
	case FamilyMautrix:
		return fromHeader
	}
	return firstSet(fromBody, fromHeader)
}

// firstSet returns the first non-zero delay.
func firstSet(a, b time.Duration) time.Duration {
	if a != 0 {
		return a
	}
	return b
}
