package herd

import (
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// CoalescedHeader marks every response that was not fetched for the client
// itself (replayed from an in-flight group or from the completion cache), so
// operators can tell shared answers apart.
const CoalescedHeader = "X-Mxgate-Coalesced"

// response is a complete, shareable upstream answer: immutable once built.
type response struct {
	status int
	header http.Header // hop-by-hop and Content-Length already removed
	body   []byte
	// headLength is the upstream Content-Length of a HEAD answer, which
	// describes the GET body rather than the (empty) recorded one.
	headLength string
}

// size is what the response holds in memory, as charged against the byte
// budget: the body's allocated capacity (not its length), the header map
// with its keys, value slices and strings, and the response itself. The
// allocator's rounding to size classes is not modelled: it stays within
// an eighth of the charge (the cache's memory test checks the sum).
func (r *response) size() int64 {
	return int64(cap(r.body)) + headerSize(r.header) + int64(unsafe.Sizeof(response{})) + allocBytes(len(r.headLength))
}

// Go's map layout as far as headerSize needs it: groups of 8 slots, filled
// to at most 7/8 before the table grows (doubling), each slot a string key
// and a []string value behind one control byte per slot.
const (
	mapHeaderBytes = 48
	mapGroupSlots  = 8
	mapSlotBytes   = int64(unsafe.Sizeof("")+unsafe.Sizeof([]string(nil))) + 1
	stringBytes    = int64(unsafe.Sizeof(""))
)

// headerSize is the memory h holds: its map, and for each field the name,
// the value slice's backing array and the value strings.
func headerSize(h http.Header) int64 {
	if h == nil {
		return 0
	}
	slots := mapGroupSlots
	for slots*7/8 < len(h) {
		slots *= 2
	}
	n := mapHeaderBytes + int64(slots)*mapSlotBytes
	for k, vs := range h {
		n += allocBytes(len(k)) + int64(cap(vs))*stringBytes
		for _, v := range vs {
			n += allocBytes(len(v))
		}
	}
	return n
}

// allocBytes is n rounded up to the allocator's smallest granules: a
// 12-byte string takes 16.
func allocBytes(n int) int64 { return int64(n+15) / 16 * 16 }

// replay writes res to w as the answer to r. Header values are copied so that
// handlers wrapping w cannot alter the shared response.
func replay(w http.ResponseWriter, r *http.Request, res *response) {
	h := w.Header()
	for k, vs := range res.header {
		h[k] = slices.Clone(vs)
	}
	h.Set(CoalescedHeader, "1")
	if r.Method == http.MethodHead {
		if res.headLength != "" {
			h.Set("Content-Length", res.headLength)
		}
		w.WriteHeader(res.status)
		return
	}
	if bodyAllowed(res.status) {
		h.Set("Content-Length", strconv.Itoa(len(res.body)))
	}
	w.WriteHeader(res.status)
	if len(res.body) > 0 {
		_, _ = w.Write(res.body) // the waiter's client leaving is its own business
	}
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// hopByHop are the headers that describe one connection, not the answer
// (RFC 9110 §7.6.1), so they are never replayed.
var hopByHop = [...]string{
	"Connection",
	"Keep-Alive",
	"Proxy-Connection",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// replayableHeader returns a copy of h fit to replay: without hop-by-hop
// headers (including those named in Connection), Content-Length (set again
// from the stored body) and any earlier coalescing marker.
func replayableHeader(h http.Header) http.Header {
	out := h.Clone()
	for _, c := range h.Values("Connection") {
		for name := range strings.SplitSeq(c, ",") {
			if name = textproto.TrimString(name); name != "" {
				out.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		out.Del(name)
	}
	out.Del("Content-Length")
	out.Del(CoalescedHeader)
	return out
}

// shareable reports whether a response with header h may be handed to
// anyone but the client it was fetched for. A shared key (across tokens)
// additionally refuses Cache-Control: private. allowNoStore lets a per-token
// key share a no-store response among the waiters of one in-flight group.
func shareable(h http.Header, shared, allowNoStore bool) bool {
	if len(h.Values("Set-Cookie")) > 0 || len(h.Values("Trailer")) > 0 {
		return false
	}
	if cacheControlHas(h, "no-store") && (shared || !allowNoStore) {
		return false
	}
	if shared && cacheControlHas(h, "private") {
		return false
	}
	for _, v := range h.Values("Vary") {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" && !varyAllowed(name) {
				return false
			}
		}
	}
	return true
}

// cacheControlHas reports whether h's Cache-Control names directive.
func cacheControlHas(h http.Header, directive string) bool {
	for _, cc := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(cc, ",") {
			d, _, _ = strings.Cut(textproto.TrimString(d), "=")
			if strings.EqualFold(d, directive) {
				return true
			}
		}
	}
	return false
}
