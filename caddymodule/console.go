package caddymodule

import (
	"embed"
	"io/fs"
	"net"
	"net/http"
	"path"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// consoleFiles are the operator console's page, script and style sheet,
// compiled into the binary: the console needs nothing from the network but
// the admin API it is served by.
//
//go:embed ui
var consoleFiles embed.FS

// consolePrefix is where the console lives on the admin endpoint.
const consolePrefix = "/mxgate/ui"

// consoleCSP keeps the page to its own origin: its own script and styles,
// fetches only to the admin API, no frames (an admin page inside another
// site's frame could be clicked by that site).
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// handleConsole serves GET /mxgate/ui (the page) and /mxgate/ui/{file}.
// The page reads GET /mxgate/status and changes toggles through POST
// /mxgate/shed and DELETE /mxgate/shed/{class}, the same routes and
// validation as the CLI.
func (a *AdminAPI) handleConsole(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return apiError(http.StatusMethodNotAllowed, "use GET")
	}
	name := strings.TrimPrefix(r.URL.Path, consolePrefix)
	name = strings.TrimPrefix(name, "/")
	if name == "" {
		name = "index.html"
	}
	if name != path.Clean(name) || strings.Contains(name, "/") {
		return apiError(http.StatusNotFound, "no such console file")
	}
	body, err := fs.ReadFile(consoleFiles, "ui/"+name)
	if err != nil {
		return apiError(http.StatusNotFound, "no such console file")
	}
	h := w.Header()
	h.Set("Content-Type", consoleContentType(name))
	h.Set("Content-Security-Policy", consoleCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // the admin's origin check reads the Referer of GETs
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}

func consoleContentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	return "application/octet-stream"
}

// ConsoleAdminOrigins is the admin endpoint's "origins" list that lets a
// browser open the console at listen (the admin address).
//
// Caddy checks the origin of every request that carries browser fetch
// metadata (Sec-Fetch-Mode) against this list, falling back to the
// Referer. The console's own fetches pass as they are (same origin), but
// the navigation that opens the page carries neither Origin nor Referer
// when the address is typed or bookmarked, so Caddy refuses it with 403.
// The list is Caddy's default for listen plus the empty origin, which only
// such requests have: browsers send an Origin with every cross-origin
// fetch and every POST, so the API stays closed to other sites.
func ConsoleAdminOrigins(listen string) ([]string, error) {
	addr, err := caddy.ParseNetworkAddress(listen)
	if err != nil {
		return nil, err
	}
	if addr.IsUnixNetwork() || addr.IsFdNetwork() {
		return nil, nil // Caddy checks no origin there
	}
	port := addr.JoinHostPort(0)
	port = port[strings.LastIndex(port, ":")+1:]
	host := addr.Host
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return []string{"", net.JoinHostPort("localhost", port), net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port)}, nil
	}
	return []string{"", addr.JoinHostPort(0)}, nil
}
