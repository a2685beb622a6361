package matrix

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Status round trip: what MarshalJSON writes reads back as the same limits,
// for every class's defaults, with readable durations and priority.
func TestLimitsJSONRoundTrip(t *testing.T) {
	for _, c := range Classes() {
		b, err := json.Marshal(DefaultLimits[c])
		if err != nil {
			t.Fatal(err)
		}
		var got Limits
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v in %s", c, err, b)
		}
		if got != DefaultLimits[c] {
			t.Errorf("%s: %s read back as %+v", c, b, got)
		}
	}
	b, _ := json.Marshal(DefaultLimits[Search])
	for _, want := range []string{`"priority":"sheddable"`, `"queue_timeout":"5s"`, `"coalesce":"0s"`, `"own_budget":false`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
}

// Configure changes only what it is given, reads both duration forms, and
// refuses what is not a setting.
func TestLimitsConfigure(t *testing.T) {
	l := DefaultLimits[Media]
	if err := l.Configure([]byte(`{"queue_timeout":"1m","coalesce":2000000000,"priority":"critical"}`)); err != nil {
		t.Fatal(err)
	}
	want := DefaultLimits[Media]
	want.QueueTimeout, want.Coalesce, want.Priority = time.Minute, 2*time.Second, Critical
	if l != want {
		t.Errorf("got %+v, want %+v", l, want)
	}
	for raw, msg := range map[string]string{
		`{"shared":false}`:               "shared is a property of the class",
		`{"own_budget":true}`:            "own_budget is a property of the class",
		`{"b":1,"a":2}`:                  `unknown class setting "a"`,
		`{"priority":"urgent"}`:          `unknown priority "urgent"`,
		`{"queue_timeout":true}`:         "want a duration",
		`{"queue_timeout":"10 parsecs"}`: "queue_timeout",
		`{"max_inflight":1.5}`:           "max_inflight",
		`null`:                           "",
	} {
		l := DefaultLimits[Media]
		err := l.Configure([]byte(raw))
		if msg == "" {
			if err != nil || l != DefaultLimits[Media] {
				t.Errorf("%s: %v, %+v", raw, err, l)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: got %v, want an error containing %q", raw, err, msg)
		}
		if l.Shared != DefaultLimits[Media].Shared || l.OwnBudget != DefaultLimits[Media].OwnBudget {
			t.Errorf("%s changed a fixed property: %+v", raw, l)
		}
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, c := range Classes() {
		if err := DefaultLimits[c].Validate(c); err != nil {
			t.Errorf("default %s: %v", c, err)
		}
	}
	for _, tc := range []struct {
		l    Limits
		c    Class
		want string
	}{
		{Limits{Queue: -1}, Other, "negative"},
		{Limits{Queue: 1}, Other, "queue_timeout > 0"},
		{Limits{Rate: 1}, Other, "burst of at least 1"},
		{Limits{ShareState: true}, History, "only for room_state"},
	} {
		if err := tc.l.Validate(tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.l, err, tc.want)
		}
	}
}
