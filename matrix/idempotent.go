package matrix

import (
	"net/http"
	"strings"
)

// Idempotent reports whether a request may be sent twice: GET, HEAD,
// OPTIONS, and the PUTs that Matrix makes idempotent — those carrying a
// transaction ID (send, sendToDevice, redact) and state events.
func Idempotent(method, path string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	case http.MethodPut:
		return hasTxnID(path) || strings.Contains(path, "/state/")
	}
	return false
}

// hasTxnID reports whether path ends in /send/{type}/{txnId},
// /sendToDevice/{type}/{txnId} or /redact/{eventId}/{txnId}.
func hasTxnID(path string) bool {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 || i == len(path)-1 {
		return false
	}
	j := strings.LastIndexByte(path[:i], '/')
	if j <= 0 || j == i-1 {
		return false
	}
	k := strings.LastIndexByte(path[:j], '/')
	switch path[k+1 : j] {
	case "send", "sendToDevice", "redact":
		return true
	}
	return false
}
