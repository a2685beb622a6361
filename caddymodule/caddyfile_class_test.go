package caddymodule

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mxgate/mxgate/matrix"
)

// classExamples gives arguments for every class subdirective, and what
// room_state's limits must then be.
var classExamples = map[string]string{
	"priority":         "sheddable",
	"max_inflight":     "3",
	"queue":            "7",
	"queue_timeout":    "4s",
	"rate":             "0.5 2",
	"coalesce":         "1500ms",
	"upstream_timeout": "45s",
	"adaptive":         "off",
	"shadow":           "",
	"share_state":      "",
}

// Every configurable setting of matrix.Limits has a class subdirective, and
// each subdirective reaches the gate's config: adding a field without its
// parser line (or a parser line without its field) fails here.
func TestClassSubdirectivesCoverSettings(t *testing.T) {
	var dirs []string
	for dir := range classSettings {
		dirs = append(dirs, dir)
	}
	sort.Strings(dirs)
	var b strings.Builder
	b.WriteString("mxgate {\n\tclass room_state {\n")
	for _, dir := range dirs {
		args, ok := classExamples[dir]
		if !ok {
			t.Fatalf("subdirective %s has no example in classExamples", dir)
		}
		fmt.Fprintf(&b, "\t\t%s %s\n", dir, args)
	}
	b.WriteString("\t}\n}")
	h := new(Handler)
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(b.String())); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	cfg, err := h.gateConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := matrix.DefaultLimits[matrix.RoomState]
	want.Priority = matrix.Sheddable
	want.MaxInflight, want.Queue, want.QueueTimeout = 3, 7, 4*time.Second
	want.Rate, want.Burst = 0.5, 2
	want.Coalesce, want.UpstreamTimeout = 1500*time.Millisecond, 45*time.Second
	want.Adaptive, want.Shadow, want.ShareState = false, true, true
	if got := cfg.Classes[matrix.RoomState]; got != want {
		t.Errorf("room_state limits\n got %+v\nwant %+v", got, want)
	}
	produced := map[string]bool{}
	for _, dir := range dirs {
		set, err := classSettings[dir](dispenserAt(t, dir+" "+classExamples[dir]))
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		for name := range set {
			produced[name] = true
		}
	}
	for _, name := range matrix.SettingNames() {
		if !produced[name] {
			t.Errorf("setting %s has no class subdirective", name)
		}
		delete(produced, name)
	}
	for name := range produced {
		t.Errorf("a subdirective sets %s, which matrix.Limits does not have", name)
	}
}

// dispenserAt returns a dispenser on the first token of line.
func dispenserAt(t *testing.T, line string) *caddyfile.Dispenser {
	t.Helper()
	d := caddyfile.NewTestDispenser(line)
	if !d.Next() {
		t.Fatalf("empty line %q", line)
	}
	return d
}

// A class block is checked where it is written: bad values and impossible
// combinations name the class and the setting.
func TestClassBlockErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"class search {\n queue 5\n queue_timeout 0s\n}", "queue_timeout > 0"},
		{"class search {\n share_state\n}", "share_state is only for room_state"},
		{"class search {\n shared\n}", `unknown subdirective "shared"`},
		{"class search {\n own_budget\n}", `unknown subdirective "own_budget"`},
		{"class search {\n queue 1\n queue 2\n}", "queue given twice"},
		{"class search {\n}\nclass search {\n}", "class search given twice"},
		{"class search {\n priority urgent\n}", `unknown priority "urgent"`},
		{"class nope {\n}", `unknown endpoint class "nope"`},
	} {
		h := new(Handler)
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mxgate {\n" + tc.src + "\n}"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.src, err, tc.want)
		}
	}
}

// The JSON config is decoded over the defaults: what a class does not set
// keeps its default, and what configuration may not change is refused.
func TestClassJSONConfig(t *testing.T) {
	h := &Handler{Classes: map[string]json.RawMessage{"search": json.RawMessage(`{"queue_timeout":"3s","max_inflight":2}`)}}
	cfg, err := h.gateConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := matrix.DefaultLimits[matrix.Search]
	want.QueueTimeout, want.MaxInflight = 3*time.Second, 2
	if got := cfg.Classes[matrix.Search]; got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for raw, msg := range map[string]string{
		`{"shared":true}`:        "shared is a property of the class",
		`{"own_budget":false}`:   "own_budget is a property of the class",
		`{"queue_timeout":"x"}`:  "queue_timeout",
		`{"max_inflight":"two"}`: "max_inflight",
		`{"nope":1}`:             `unknown class setting "nope"`,
		`[1]`:                    "cannot unmarshal",
	} {
		h := &Handler{Classes: map[string]json.RawMessage{"search": json.RawMessage(raw)}}
		if _, err := h.gateConfig(); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: got %v, want an error containing %q", raw, err, msg)
		}
	}
}
