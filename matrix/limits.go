package matrix

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// Limits are the admission settings of one endpoint class: the one shape a
// class's settings have from the configuration to the status output. A zero
// field means "off" (no cap, no rate limit, no coalescing) except where
// noted.
//
// Each field's `setting` tag is its name in the Caddyfile, the JSON config
// and the status; ",fixed" marks a property of the class that status shows
// but configuration may not change (whose answers may be shared, which
// budget a class draws on). A new setting is a field here plus its
// Caddyfile parser line (caddymodule/caddyfile_class.go); the JSON codec
// and the status follow from the tag.
type Limits struct {
	// Priority decides what a brownout sheds.
	Priority Priority `setting:"priority"`
	// MaxInflight caps this class's requests at the upstream; 0 means no
	// per-class cap (the global cap still applies).
	MaxInflight int `setting:"max_inflight"`
	// Queue is how many requests may wait for a slot; beyond it they are shed.
	Queue int `setting:"queue"`
	// QueueTimeout is how long a request may wait for a slot before a 429.
	QueueTimeout time.Duration `setting:"queue_timeout"`
	// Rate and Burst are a per-user token bucket (tokens per second, bucket
	// size); Rate 0 disables it.
	Rate  float64 `setting:"rate"`
	Burst int     `setting:"burst"`
	// Coalesce shares identical in-flight GET/HEAD requests and keeps the
	// completed answer this long; 0 disables it.
	Coalesce time.Duration `setting:"coalesce"`
	// UpstreamTimeout bounds how long the upstream may take to begin its
	// answer once the request, body included, has been sent; past it the
	// request is cancelled and answered 504. 0: no bound (long-poll /sync,
	// which the homeserver holds open by design).
	UpstreamTimeout time.Duration `setting:"upstream_timeout"`
	// Adaptive lowers the cap to a limit learnt from the upstream's latency
	// (limiter.Gradient); MaxInflight is then its ceiling.
	Adaptive bool `setting:"adaptive"`
	// Shadow makes the class's automatic limits only observe: what they
	// would refuse is counted, not refused (gate/shadow.go).
	Shadow bool `setting:"shadow"`
	// ShareState (room_state only): during a herd, one fetch of a room's
	// /state and /joined_members serves every requester verified as joined.
	ShareState bool `setting:"share_state"`
	// Shared allows a coalesced answer to be served to other access tokens,
	// for the requests matrix.Request.SharedAcrossCredentials allows (media
	// and /versions). A property of the class, not a setting: whose answer
	// is whose is never configurable.
	Shared bool `setting:"shared,fixed"`
	// OwnBudget keeps this class out of the global max_inflight: long-poll
	// /sync requests sit idle at the upstream for up to 30 s and would
	// otherwise crowd out active work (and be crowded out by it).
	OwnBudget bool `setting:"own_budget,fixed"`
}

// Validate reports the settings of l, class c's limits, that cannot work,
// named as configuration names them.
func (l Limits) Validate(c Class) error {
	var problems []string
	if l.MaxInflight < 0 || l.Queue < 0 || l.QueueTimeout < 0 || l.Rate < 0 || l.Burst < 0 || l.Coalesce < 0 || l.UpstreamTimeout < 0 {
		problems = append(problems, "limits must not be negative")
	}
	if l.Queue > 0 && l.QueueTimeout <= 0 {
		problems = append(problems, "a queue needs a queue_timeout > 0 (every wait is bounded)")
	}
	if l.Rate > 0 && l.Burst < 1 {
		problems = append(problems, "rate needs a burst of at least 1")
	}
	if l.ShareState && c != RoomState {
		problems = append(problems, "share_state is only for room_state")
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(problems, "; "))
}

// limitField is one field of Limits as the codec sees it; limitFields[i]
// is field i.
type limitField struct {
	name  string
	fixed bool
}

var limitFields = func() []limitField {
	t := reflect.TypeOf(Limits{})
	fields := make([]limitField, t.NumField())
	for i := range fields {
		tag, ok := t.Field(i).Tag.Lookup("setting")
		if !ok {
			panic("matrix.Limits." + t.Field(i).Name + " has no setting tag")
		}
		name, opt, _ := strings.Cut(tag, ",")
		fields[i] = limitField{name: name, fixed: opt == "fixed"}
	}
	return fields
}()

// SettingNames lists the configurable settings of Limits in field order.
func SettingNames() []string {
	var names []string
	for _, f := range limitFields {
		if !f.fixed {
			names = append(names, f.name)
		}
	}
	return names
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	priorityType = reflect.TypeOf(Priority(0))
)

// MarshalJSON writes every field by its setting name, durations as Go
// duration strings ("10s") and the priority by name.
func (l Limits) MarshalJSON() ([]byte, error) {
	v := reflect.ValueOf(l)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range limitFields {
		if i > 0 {
			b.WriteByte(',')
		}
		var val any
		switch fv := v.Field(i); fv.Type() {
		case durationType:
			val = time.Duration(fv.Int()).String()
		case priorityType:
			val = Priority(fv.Uint()).String()
		default:
			val = fv.Interface()
		}
		enc, err := json.Marshal(val)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%q:%s", f.name, enc)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads what MarshalJSON wrote (a status), fixed
// properties included, over l.
func (l *Limits) UnmarshalJSON(data []byte) error {
	return l.decode(data, true)
}

// Configure decodes an object of settings over l: a setting that is absent
// keeps its value, so configuring a class's defaults yields its resolved
// limits. Durations are a Go duration string or integer nanoseconds
// (Caddy's JSON form); the priority is its name. An unknown setting, or a
// fixed property of the class, is an error naming it.
func (l *Limits) Configure(data []byte) error {
	return l.decode(data, false)
}

func (l *Limits) decode(data []byte, withFixed bool) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	v := reflect.ValueOf(l).Elem()
	for i, f := range limitFields { // field order: deterministic errors
		msg, ok := raw[f.name]
		if !ok {
			continue
		}
		delete(raw, f.name)
		if f.fixed && !withFixed {
			return fmt.Errorf("%s is a property of the class, not a setting", f.name)
		}
		if err := decodeSetting(v.Field(i), msg); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if len(raw) > 0 {
		unknown := make([]string, 0, len(raw))
		for name := range raw {
			unknown = append(unknown, name)
		}
		sort.Strings(unknown)
		return fmt.Errorf("unknown class setting %q (settings: %s)", unknown[0], strings.Join(SettingNames(), ", "))
	}
	return nil
}

func decodeSetting(v reflect.Value, msg json.RawMessage) error {
	switch v.Type() {
	case durationType:
		var s string
		if json.Unmarshal(msg, &s) == nil {
			d, err := time.ParseDuration(s)
			if err != nil {
				return err
			}
			v.SetInt(int64(d))
			return nil
		}
		var ns int64
		if err := json.Unmarshal(msg, &ns); err != nil {
			return fmt.Errorf("want a duration (\"10s\" or nanoseconds), got %s", msg)
		}
		v.SetInt(ns)
		return nil
	case priorityType:
		var s string
		if err := json.Unmarshal(msg, &s); err != nil {
			return fmt.Errorf("want a priority name, got %s", msg)
		}
		p, err := ParsePriority(s)
		if err != nil {
			return err
		}
		v.SetUint(uint64(p))
		return nil
	default:
		return json.Unmarshal(msg, v.Addr().Interface())
	}
}
