//go:build linux

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// consoleBrowserTimeout bounds the browser script.
const consoleBrowserTimeout = 2 * time.Minute

// The console, opened in headless Chromium on the gateway's admin address:
// every class is shown with live numbers; shedding search for 2 minutes with
// a reason (by keyboard) makes search answer 429 and shows the toggle with
// its reason; restore ends it; a status with a fleet section lists its
// members (testdata/console.cjs). MXGATE_CONSOLE_SCREENSHOT=path keeps the
// screenshot (the README's docs/console.png is made so).
func TestConsoleInBrowser(t *testing.T) {
	chromiumBin := debianTool(t, "chromium", "chromium")
	node := debianTool(t, "node", "nodejs")
	modules := playwrightModules(t)

	site, admin := startGateway(t)
	// The console is on the admin address only: on the public listener
	// /mxgate/ui is the homeserver's.
	if body := fetch(t, "http://"+site+"/mxgate/ui"); strings.Contains(body, "mxgate console") {
		t.Fatal("the console is served on the public listener")
	}
	if body := fetch(t, "http://"+admin+"/mxgate/ui"); !strings.Contains(body, "mxgate console") {
		t.Fatalf("no console on the admin address: %.200s", body)
	}
	busy := []string{"discovery", "room_state", "history", "keys"}
	searches := keepBusy(t, site)

	shot, fill := os.Getenv("MXGATE_CONSOLE_SCREENSHOT"), "4500"
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "console.png")
	} else if abs, err := filepath.Abs(shot); err == nil {
		shot, fill = abs, "45000" // the README's picture: charts with some history
	}
	var classes []string
	for _, c := range matrix.Classes() {
		classes = append(classes, c.String())
	}
	script, err := filepath.Abs("testdata/console.cjs")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), consoleBrowserTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Env = append(os.Environ(),
		"NODE_PATH="+modules,
		"ADMIN=http://"+admin,
		"SITE=http://"+site,
		"CHROMIUM="+chromiumBin,
		"PROFILE="+t.TempDir(),
		"CLASSES="+strings.Join(classes, ","),
		"BUSY="+strings.Join(busy, ","),
		"SCREENSHOT="+shot,
		"SCREENSHOT_WAIT_MS="+fill,
	)
	out, err := cmd.CombinedOutput()
	t.Logf("browser script:\n%s", out)
	if err != nil {
		t.Fatalf("browser script: %v", err)
	}
	if !strings.Contains(string(out), "step: done") {
		t.Fatal("browser script did not finish")
	}

	// What the browser did, seen from outside it: clients of search were
	// refused while the toggle was on, and it is gone now.
	if n := searches.refused.Load(); n == 0 {
		t.Errorf("no search request was refused while the console had it shed (%d answered)", searches.ok.Load())
	}
	var st struct {
		Zones []struct {
			Toggles []json.RawMessage `json:"toggles"`
		} `json:"zones"`
	}
	getJSON(t, "http://"+admin+"/mxgate/status", &st)
	if len(st.Zones) == 0 || len(st.Zones[0].Toggles) != 0 {
		t.Errorf("toggles after restore: %+v", st)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10000 {
		t.Errorf("screenshot %s: %v (size %d)", shot, err, sizeOf(fi))
	}
}

// searchCounts are the answers keepBusy's search client saw.
type searchCounts struct{ ok, refused atomic.Int64 }

// keepBusy sends a steady trickle of requests to a few classes (and
// search) until the test ends, so the console has live numbers to show.
func keepBusy(t *testing.T, site string) *searchCounts {
	t.Helper()
	paths := []struct{ method, path string }{
		{"GET", "/_matrix/client/versions"},
		{"GET", "/_matrix/client/v3/rooms/!busy:example.org/state"},
		{"GET", "/_matrix/client/v3/rooms/!busy:example.org/messages"},
		{"POST", "/_matrix/client/v3/keys/query"},
	}
	counts := &searchCounts{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	do := func(method, path string) int {
		req, _ := http.NewRequest(method, "http://"+site+path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer syt_busy_client")
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			p := paths[i%len(paths)]
			do(p.method, p.path)
			if i%5 == 0 {
				switch do("POST", "/_matrix/client/v3/search") {
				case http.StatusOK:
					counts.ok.Add(1)
				case http.StatusTooManyRequests:
					counts.refused.Add(1)
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
	})
	return counts
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return 0
	}
	return fi.Size()
}
