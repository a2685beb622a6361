package e2e

import "testing"

func TestParseMetrics(t *testing.T) {
	text := []byte(`# HELP mxgate_requests_total Requests by class and outcome.
# TYPE mxgate_requests_total counter
mxgate_requests_total{class="room_state",outcome="shed"} 7
mxgate_requests_total{class="room_state",outcome="queued"} 3
mxgate_requests_total{class="sync_initial",outcome="shed"} 1e+01
mxgate_inflight{class="a\"b,c"} 2 1700000000000
process_open_fds 12
`)
	samples, err := parseMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 5 {
		t.Fatalf("parsed %d samples, want 5", len(samples))
	}
	if got := metricSum(samples, "mxgate_requests_total", map[string]string{"class": "room_state"}); got != 10 {
		t.Errorf("room_state sum = %v, want 10", got)
	}
	if got := metricSum(samples, "mxgate_requests_total", map[string]string{"outcome": "shed"}); got != 17 {
		t.Errorf("shed sum = %v, want 17", got)
	}
	if got := metricSum(samples, "mxgate_inflight", map[string]string{"class": `a"b,c`}); got != 2 {
		t.Errorf("escaped label value: sum = %v, want 2", got)
	}
	if got := metricSum(samples, "process_open_fds", nil); got != 12 {
		t.Errorf("unlabelled sample = %v, want 12", got)
	}
	if _, err := parseMetrics([]byte(`broken{class="x" 1`)); err == nil {
		t.Error("malformed line parsed without error")
	}
}
