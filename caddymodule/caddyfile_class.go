package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mxgate/mxgate/matrix"
)

// classSettings are the subdirectives of a `class NAME { … }` block: each
// reads its arguments into the matrix.Limits settings of the same name
// (rate sets rate and burst). A new class setting is a matrix.Limits field
// and its line here; TestClassSubdirectivesCoverSettings holds them in step.
var classSettings = map[string]func(d *caddyfile.Dispenser) (map[string]any, error){
	"priority":         setting(priorityValue),
	"max_inflight":     setting(intValue),
	"queue":            setting(intValue),
	"queue_timeout":    setting(durationValue),
	"rate":             rateSettings, // rate TOKENS_PER_SECOND BURST
	"coalesce":         setting(durationValue),
	"upstream_timeout": setting(durationValue),
	"adaptive":         setting(onOffValue),
	"shadow":           setting(onOffValue),
	"share_state":      setting(flagValue),
}

// setting parses a subdirective that sets the one setting it names.
func setting[T any](parse func(d *caddyfile.Dispenser) (T, error)) func(d *caddyfile.Dispenser) (map[string]any, error) {
	return func(d *caddyfile.Dispenser) (map[string]any, error) {
		name := d.Val()
		v, err := parse(d)
		if err != nil {
			return nil, err
		}
		return map[string]any{name: v}, nil
	}
}

func intValue(d *caddyfile.Dispenser) (int, error) {
	n, err := intArg(d)
	if err != nil {
		return 0, err
	}
	return *n, nil
}

// durationValue is a duration in Caddy's JSON form, integer nanoseconds.
func durationValue(d *caddyfile.Dispenser) (int64, error) {
	dur, err := durationArg(d)
	if err != nil {
		return 0, err
	}
	return int64(*dur), nil
}

func onOffValue(d *caddyfile.Dispenser) (bool, error) {
	on, err := unmarshalOnOff(d)
	if err != nil {
		return false, err
	}
	return *on, nil
}

// flagValue is a subdirective without arguments that turns a setting on.
func flagValue(d *caddyfile.Dispenser) (bool, error) {
	if d.NextArg() {
		return false, d.ArgErr()
	}
	return true, nil
}

func priorityValue(d *caddyfile.Dispenser) (string, error) {
	p, err := oneString(d)
	if err != nil {
		return "", err
	}
	if _, err := matrix.ParsePriority(p); err != nil {
		return "", d.Err(err.Error())
	}
	return p, nil
}

func rateSettings(d *caddyfile.Dispenser) (map[string]any, error) {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return nil, d.Errf("rate wants: TOKENS_PER_SECOND BURST")
	}
	r, err := strconv.ParseFloat(args[0], 64)
	if err != nil || !(r >= 0 && r <= 1e6) {
		return nil, d.Errf("rate: want tokens per second between 0 and 1e6, got %q", args[0])
	}
	b, err := strconv.Atoi(args[1])
	if err != nil || b < 1 {
		return nil, d.Errf("rate: want a burst of at least 1, got %q", args[1])
	}
	return map[string]any{"rate": r, "burst": b}, nil
}

// unmarshalClass parses `class NAME { … }` into h.Classes[NAME], the JSON
// object of the settings given. The block is checked as configured over the
// class's defaults, so that an impossible combination is reported at its
// line.
func (h *Handler) unmarshalClass(d *caddyfile.Dispenser) error {
	d.NextArg()
	name := d.Val()
	class, err := matrix.ParseClass(name)
	if err != nil {
		return d.Err(err.Error())
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	if _, dup := h.Classes[name]; dup {
		return d.Errf("class %s given twice", name)
	}
	values := map[string]any{}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		parse, ok := classSettings[dir]
		if !ok {
			return d.Errf("class %s: unknown subdirective %q", name, dir)
		}
		if seen[dir] {
			return d.Errf("class %s: %s given twice", name, dir)
		}
		seen[dir] = true
		if dir == "share_state" && class != matrix.RoomState {
			return d.Errf("class %s: share_state is only for room_state", name)
		}
		set, err := parse(d)
		if err != nil {
			return err
		}
		for k, v := range set {
			values[k] = v
		}
	}
	raw, err := encodeSettings(values)
	if err != nil {
		return d.Err(err.Error())
	}
	limits := matrix.DefaultLimits[class]
	if err := limits.Configure(raw); err != nil {
		return d.Errf("class %s: %v", name, err)
	}
	if err := limits.Validate(class); err != nil {
		return d.Errf("class %s: %v", name, err)
	}
	if h.Classes == nil {
		h.Classes = make(map[string]json.RawMessage)
	}
	h.Classes[name] = raw
	return nil
}

// encodeSettings writes values as a JSON object in matrix.Limits field
// order, so that adapted configs read like the struct.
func encodeSettings(values map[string]any) (json.RawMessage, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for _, name := range matrix.SettingNames() {
		v, ok := values[name]
		if !ok {
			continue
		}
		enc, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", name, enc)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
