package caddymodule

import (
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mxgate/mxgate/gate"
)

// CORSConfig sets the CORS headers of the answers mxgate writes itself: its
// 429s, the 502/504 Caddy writes when the upstream fails, and preflights it
// answers while the homeserver is down. Answers the homeserver wrote keep
// its own headers. Absent: on, with the values Synapse sends plus
// Access-Control-Expose-Headers: Retry-After.
type CORSConfig struct {
	Disabled bool `json:"disabled,omitempty"`
	// Each unset value keeps its default; an empty one is not sent.
	AllowOrigin   *string `json:"allow_origin,omitempty"`
	AllowMethods  *string `json:"allow_methods,omitempty"`
	AllowHeaders  *string `json:"allow_headers,omitempty"`
	ExposeHeaders *string `json:"expose_headers,omitempty"`
}

// applyCORS resolves cors over the gate defaults.
func (h *Handler) applyCORS(cfg *gate.Config) {
	c := h.CORS
	if c == nil {
		return
	}
	cfg.CORS.Enabled = !c.Disabled
	for _, v := range []struct {
		from *string
		to   *string
	}{
		{c.AllowOrigin, &cfg.CORS.AllowOrigin},
		{c.AllowMethods, &cfg.CORS.AllowMethods},
		{c.AllowHeaders, &cfg.CORS.AllowHeaders},
		{c.ExposeHeaders, &cfg.CORS.ExposeHeaders},
	} {
		if v.from != nil {
			*v.to = *v.from
		}
	}
}

// unmarshalCORS parses
//
//	cors [off] {
//		allow_origin   <origin>
//		allow_methods  <method>...
//		allow_headers  <header>...
//		expose_headers <header>...
//	}
//
// A list's items may be given as separate arguments or comma-separated;
// they are sent comma-separated. A subdirective without arguments sends
// no such header.
func (h *Handler) unmarshalCORS(d *caddyfile.Dispenser) error {
	c := new(CORSConfig)
	if d.NextArg() {
		if d.Val() != "off" || d.NextArg() {
			return d.Errf("cors: want `cors off` or a block")
		}
		c.Disabled = true
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] {
			return d.Errf("cors: %s given twice", dir)
		}
		seen[dir] = true
		if c.Disabled {
			return d.Errf("cors: `off` takes no block")
		}
		v := headerList(d.RemainingArgs())
		switch dir {
		case "allow_origin":
			if strings.Contains(v, ",") {
				return d.Errf("cors: allow_origin is one origin or *, got %q", v)
			}
			c.AllowOrigin = &v
		case "allow_methods":
			c.AllowMethods = &v
		case "allow_headers":
			c.AllowHeaders = &v
		case "expose_headers":
			c.ExposeHeaders = &v
		default:
			return d.Errf("cors: unknown subdirective %q", dir)
		}
	}
	h.CORS = c
	return nil
}

// headerList joins Caddyfile arguments into one comma-separated header
// value: "GET," "POST" and "GET, POST" all give "GET, POST".
func headerList(args []string) string {
	var items []string
	for _, a := range args {
		for _, item := range strings.Split(a, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
	}
	return strings.Join(items, ", ")
}
