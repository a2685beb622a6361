package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// `mxgate gateway --shadow` in front of a slow homeserver: a burst far over
// room_state's cap is answered 200 throughout, the would_* outcomes count
// what would have been refused, and an operator's shed still sheds.
func TestGatewayShadowLetsBurstThrough(t *testing.T) {
	const burst = 400
	var arrived atomic.Int64
	allIn, release := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	// Slow: every request is held until the whole burst is at the
	// homeserver and the test has read the status (bounded), so none of it
	// finishes early and frees a slot.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/state") && arrived.Add(1) == burst {
			once.Do(func() { close(allIn) })
		}
		if strings.HasSuffix(r.URL.Path, "/state") {
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{}`)
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { released.Do(func() { close(release) }) }) // before slow.Close
	res := defaultGatewayResilience
	res.Shadow = true
	site, admin := runGateway(t, slow.URL, res)

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: burst}}
	t.Cleanup(client.CloseIdleConnections)
	get := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+site+"/_matrix/client/v3/rooms/!big:example.org/state", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	codes := make(chan int, burst)
	for i := 0; i < burst; i++ {
		go func() { codes <- get(fmt.Sprintf("syt_shadow_user_%d", i)) }()
	}
	select {
	case <-allIn:
	case <-time.After(20 * time.Second):
		t.Fatalf("only %d of %d requests reached the homeserver: the cap held them", arrived.Load(), burst)
	}
	held := roomState(t, admin)
	released.Do(func() { close(release) })
	for i := 0; i < burst; i++ {
		if code := <-codes; code != http.StatusOK {
			t.Fatalf("shadow gateway answered %d during the burst", code)
		}
	}
	t.Logf("during the burst: in flight %d, cap %d, queue %d, would-be queue %d", held.Inflight, held.Cap, held.Limits.Queue, held.ShadowQueued)
	if !held.Shadow || held.Inflight != burst || held.Cap <= 0 || held.Cap >= burst || held.ShadowQueued != held.Limits.Queue {
		t.Fatalf("status during the burst: %+v", held)
	}
	after := roomState(t, admin)
	wantShed := uint64(burst - held.Cap - held.Limits.Queue)
	if c := after.Counters; c.WouldShed != wantShed || c.Shed != 0 || c.Timeout != 0 || c.Admitted != burst {
		t.Fatalf("counters %+v, want would_shed %d and nothing refused", c, wantShed)
	}
	metrics := fetch(t, "http://"+admin+"/metrics")
	wantLine := fmt.Sprintf(`mxgate_requests_total{class="room_state",outcome="would_shed"} %d`, wantShed)
	if !strings.Contains(metrics, wantLine) {
		t.Errorf("metrics lack %s", wantLine)
	}

	// An operator who sheds means it.
	body := `{"class":"room_state","for":"1m","reason":"operator says no"}`
	resp, err := http.Post("http://"+admin+"/mxgate/shed", "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("shed: %s", resp.Status)
	}
	if code := get("syt_after_shed"); code != http.StatusTooManyRequests {
		t.Fatalf("operator shed in shadow mode answered %d, want 429", code)
	}
}

// roomStateStatus is the part of a class's status the shadow test reads.
type roomStateStatus struct {
	Class        string `json:"class"`
	Inflight     int    `json:"inflight"`
	Cap          int    `json:"cap"`
	Shadow       bool   `json:"shadow"`
	ShadowQueued int    `json:"shadow_queued"`
	Limits       struct {
		Queue int `json:"queue"`
	} `json:"limits"`
	Counters struct {
		Admitted  uint64 `json:"admitted"`
		Shed      uint64 `json:"shed"`
		Timeout   uint64 `json:"timeout"`
		WouldShed uint64 `json:"would_shed"`
	} `json:"counters"`
}

func roomState(t *testing.T, admin string) roomStateStatus {
	t.Helper()
	var st struct {
		Zones []struct {
			Shadow  bool              `json:"shadow"`
			Classes []roomStateStatus `json:"classes"`
		} `json:"zones"`
	}
	getJSON(t, "http://"+admin+"/mxgate/status", &st)
	if len(st.Zones) != 1 || !st.Zones[0].Shadow {
		t.Fatalf("status does not show shadow mode: %+v", st)
	}
	for _, c := range st.Zones[0].Classes {
		if c.Class == "room_state" {
			return c
		}
	}
	t.Fatal("no room_state in status")
	return roomStateStatus{}
}

func fetch(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
