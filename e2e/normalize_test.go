package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// volatileKeys hold values that differ between two identical runs against the
// same homeserver (time, random ids, tokens, stream positions). Their values
// are replaced by a placeholder; the keys themselves must still match.
var volatileKeys = map[string]bool{
	"access_token": true, "device_id": true, "session": true,
	"event_id": true, "replaces_state": true, "redacts": true,
	"origin_server_ts": true, "age": true, "ts": true, "last_active_ago": true,
	"next_batch": true, "prev_batch": true, "since": true, "start": true, "end": true,
	"content_uri": true, "txn_id": true, "transaction_id": true,
	"expires_in_ms": true, "refresh_token": true,
	// Dendrite computes notification counts asynchronously after sends and
	// read markers, so two identical runs see different counts.
	"notification_count": true, "highlight_count": true,
}

// eventIDPattern matches room-version-4+ event IDs (URL-safe base64 hash).
var eventIDPattern = regexp.MustCompile(`^\$[A-Za-z0-9_\-+/]{43}$`)

// normalizer turns a response body into a form two runs can compare.
type normalizer struct {
	// names maps run-specific identifiers (user, room, event IDs the run
	// created) to role names such as "@alice" or "$message1". It is applied
	// to keys and values, so maps keyed by user or room compare too.
	names map[string]string
	// longestFirst is names' keys, longest first, so that "@alice-x:localhost"
	// is replaced as a whole before its localpart "alice-x" is.
	longestFirst []string
	// unordered sorts every array (by canonical JSON) for endpoints whose
	// element order the spec leaves open, such as /state.
	unordered bool
}

// newNormalizer returns a normalizer for one run's identifier names.
func newNormalizer(names map[string]string, unordered bool) normalizer {
	keys := make([]string, 0, len(names))
	for k := range names {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) {
			return len(keys[i]) > len(keys[j])
		}
		return keys[i] < keys[j]
	})
	return normalizer{names: names, longestFirst: keys, unordered: unordered}
}

// normalizeBody returns the normalized JSON of body, or for a non-JSON body a
// summary of its length and hash.
func (n normalizer) normalizeBody(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return fmt.Sprintf("<%d bytes sha256:%x>", len(body), sha256.Sum256(body))
	}
	var out strings.Builder
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // keep "<event_id>" readable in diffs
	enc.SetIndent("", "  ")
	if err := enc.Encode(n.normalize(v)); err != nil { // cannot happen for decoded JSON
		panic(err)
	}
	return out.String()
}

// normalize returns a normalized copy of a decoded JSON value.
func (n normalizer) normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, val := range v {
			if volatileKeys[k] {
				// A volatile value this run created keeps its role name,
				// so "event_id": "$message1" still has to match.
				if str, ok := val.(string); ok && n.names[str] != "" {
					out[k] = n.names[str]
				} else {
					out[k] = "<" + k + ">"
				}
				continue
			}
			out[n.name(k)] = n.normalize(val)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, val := range v {
			out[i] = n.normalize(val)
		}
		if n.unordered {
			sort.Slice(out, func(i, j int) bool { return canonical(out[i]) < canonical(out[j]) })
		}
		return out
	case string:
		return n.name(v)
	default:
		return v
	}
}

// name maps a string to its role name: exact run-specific identifiers first,
// then any remaining event ID, then identifiers embedded in longer strings
// (such as a user ID inside an mxc URI or a display name).
func (n normalizer) name(s string) string {
	if r, ok := n.names[s]; ok {
		return r
	}
	if eventIDPattern.MatchString(s) {
		return "<event>"
	}
	for _, from := range n.longestFirst {
		s = strings.ReplaceAll(s, from, n.names[from])
	}
	return s
}

func canonical(v any) string {
	b, _ := json.Marshal(v) // decoded JSON always marshals; map keys sort
	return string(b)
}
