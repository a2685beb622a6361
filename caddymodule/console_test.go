package caddymodule

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// The console's files are served with a policy that keeps the page to its
// own origin; anything else under /mxgate/ui is a 404, and only GET and
// HEAD are allowed.
func TestConsoleFiles(t *testing.T) {
	var a AdminAPI
	for _, tc := range []struct {
		method, path string
		code         int
		ctype        string
	}{
		{"GET", "/mxgate/ui", 200, "text/html; charset=utf-8"},
		{"GET", "/mxgate/ui/", 200, "text/html; charset=utf-8"},
		{"HEAD", "/mxgate/ui/console.js", 200, "text/javascript; charset=utf-8"},
		{"GET", "/mxgate/ui/console.css", 200, "text/css; charset=utf-8"},
		{"GET", "/mxgate/ui/nope.js", 404, ""},
		{"GET", "/mxgate/ui/../admin.go", 404, ""},
		{"GET", "/mxgate/ui/ui/index.html", 404, ""},
		{"POST", "/mxgate/ui", 405, ""},
	} {
		rec := httptest.NewRecorder()
		err := a.handleConsole(rec, httptest.NewRequest(tc.method, tc.path, nil))
		code := rec.Code
		var apiErr caddy.APIError
		if errors.As(err, &apiErr) {
			code = apiErr.HTTPStatus
		}
		if code != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, code, tc.code)
			continue
		}
		if tc.code != 200 {
			continue
		}
		h := rec.Header()
		if h.Get("Content-Type") != tc.ctype || !strings.Contains(h.Get("Content-Security-Policy"), "connect-src 'self'") ||
			!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: headers %v", tc.method, tc.path, h)
		}
		if tc.method == "HEAD" && rec.Body.Len() != 0 {
			t.Errorf("HEAD with a body")
		}
	}
	// The page loads nothing from elsewhere.
	rec := httptest.NewRecorder()
	_ = a.handleConsole(rec, httptest.NewRequest("GET", "/mxgate/ui", nil))
	for _, ext := range []string{"http://", "https://", "//fonts", "@import"} {
		if strings.Contains(rec.Body.String(), ext) {
			t.Errorf("the page refers to %q", ext)
		}
	}
}

// The admin origins that let a browser open the console: Caddy's default
// for the address, plus the empty origin of a typed address.
func TestConsoleAdminOrigins(t *testing.T) {
	for listen, want := range map[string]string{
		"localhost:2019":   ",localhost:2019,127.0.0.1:2019,[::1]:2019",
		"127.0.0.1:41000":  ",localhost:41000,127.0.0.1:41000,[::1]:41000",
		"10.0.0.5:2019":    ",10.0.0.5:2019",
		"unix//run/a.sock": "",
	} {
		got, err := ConsoleAdminOrigins(listen)
		if err != nil {
			t.Fatalf("%s: %v", listen, err)
		}
		if strings.Join(got, ",") != want {
			t.Errorf("%s: %q, want %q", listen, got, want)
		}
	}
}
