package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mxgate/mxgate/internal/testkit"
)

// tokenMark is inside every token this test sends: no log line, metric or
// status answer may contain it.
const tokenMark = "leakcheck"

// A gateway whose upstream refuses connections, then one that answers (some
// paths with its own 502) while clients send broken bodies, all with tokens in every accepted form: its
// log (error and access lines), /metrics and /mxgate/status never contain a
// token.
func TestGatewayNeverLogsTokens(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	logFile := filepath.Join(t.TempDir(), "caddy.log")

	refused := testkit.FreeLoopback(t) // nothing listens there
	live := newLiveUpstream(t)
	for _, upstream := range []string{"http://" + refused, live} {
		site, admin := testkit.FreeLoopback(t), testkit.FreeLoopback(t)
		raw, err := gatewayConfigWith(upstream, site, admin, gatewayResilience{})
		if err != nil {
			t.Fatal(err)
		}
		if err := caddy.Load(withLogFile(t, raw, logFile), true); err != nil {
			t.Fatalf("loading the gateway config: %v", err)
		}
		sendTokenVariants(t, site)
		sendBrokenBodies(t, site)
		for _, path := range []string{"/metrics", "/mxgate/status"} {
			body := get(t, "http://"+admin+path)
			if strings.Contains(body, tokenMark) {
				t.Errorf("%s on the admin endpoint contains a token", path)
			}
		}
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
	}

	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines, errors := 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines++
		line := sc.Text()
		if strings.Contains(line, `"level":"error"`) {
			errors++
		}
		if strings.Contains(strings.ToLower(line), tokenMark) {
			t.Errorf("log line holds a token: %s", line)
		}
	}
	// The run must have produced what it checks: error lines with request
	// URIs, from the refused upstream and the broken bodies.
	if errors < 10 || lines < 20 {
		t.Fatalf("only %d log lines, %d errors: the run did not exercise the logs", lines, errors)
	}
}

// withLogFile points the config's default log at file, keeps its encoder,
// and turns on access logs for every server.
func withLogFile(t *testing.T, raw []byte, file string) []byte {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	def := cfg["logging"].(map[string]any)["logs"].(map[string]any)["default"].(map[string]any)
	def["writer"] = map[string]any{"output": "file", "filename": file}
	def["level"] = "DEBUG"
	servers := cfg["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)
	for _, s := range servers {
		s.(map[string]any)["logs"] = map[string]any{}
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newLiveUpstream(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.URL.Path, "/messages") {
			w.WriteHeader(http.StatusBadGateway) // the homeserver's own 5xx
		}
		fmt.Fprint(w, `{}`)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

// sendTokenVariants asks a few endpoints with the token in every form a
// homeserver accepts, and in ambiguous mixes.
func sendTokenVariants(t *testing.T, site string) {
	t.Helper()
	tok := "syt_" + tokenMark + "_SECRET"
	paths := []string{"/_matrix/client/v3/sync", "/_matrix/client/v3/rooms/%21r%3Ax/messages?dir=b", "/_matrix/client/v3/profile/%40u%3Ax"}
	for _, p := range paths {
		sep := "?"
		if strings.Contains(p, "?") {
			sep = "&"
		}
		for _, v := range []struct{ query, auth string }{
			{"", "Bearer " + tok},
			{"access_token=" + tok, ""},
			{"%61ccess_token=" + tok, ""},
			{"access%5Ftoken=" + tok, ""},
			{"access_token=" + tok, "Basic " + tok},
			{"access_token=" + tok + "&x=%zz", ""},
			{"access_token=" + tok + ";x=1", ""},
		} {
			target := "http://" + site + p
			if v.query != "" {
				target += sep + v.query
			}
			req, err := http.NewRequest(http.MethodGet, target, nil)
			if err != nil {
				t.Fatal(err)
			}
			if v.auth != "" {
				req.Header.Set("Authorization", v.auth)
			}
			req.Header.Set("Cookie", "session="+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", target, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}

// sendBrokenBodies sends uploads whose chunked encoding is garbage or that
// stop half-way, each with a query token.
func sendBrokenBodies(t *testing.T, site string) {
	t.Helper()
	tok := "syt_" + tokenMark + "_BODY"
	for _, body := range []string{
		"zz\r\ngarbage\r\n",     // not a chunk size
		"10\r\nshort",           // the chunk stops early
		"5\r\nhello\r\n3\r\nab", // a later chunk stops early
	} {
		conn, err := net.DialTimeout("tcp", site, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "PUT /_matrix/client/v3/rooms/%%21r%%3Ax/send/m.room.message/txn1?access_token=%s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n%s", tok, body)
		if tcp, ok := conn.(*net.TCPConn); ok {
			_ = tcp.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, conn)
		conn.Close()
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
