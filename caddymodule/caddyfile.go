package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/matrix"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mxgate", parseCaddyfile)
	// Admission control must run before anything reaches the upstream, and
	// before rate_limit-style handlers spend work on requests it would shed.
	httpcaddyfile.RegisterDirectiveOrder("mxgate", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	mxgate {
//		zone          <name>
//		max_inflight  <n>
//		queue_timeout <duration>
//		retry_after   <min> <max>
//		lifo_after    <duration>
//		handle_errors
//		class <name> {
//			max_inflight  <n>
//			queue         <n>
//			queue_timeout <duration>
//			rate          <per_second> <burst>
//			coalesce      <duration>
//			upstream_timeout <duration>
//			priority      critical|normal|sheddable
//			share_state   # room_state only
//			adaptive      [off]
//			shadow        [off]
//		}
//		herd {
//			window      <duration>
//			min_users   <n>
//			retry_after <min> <max>
//			off
//		}
//		shed <class>...
//		state_file <path>|off
//		max_toggle_duration <duration>
//		health_dial   <host:port>
//		adaptive      [off]     # every class but sync; see resilience.go
//		shadow        [off]     # automatic limits only observe; see gate/shadow.go
//		ride_through  [off] {
//			failures       <n>
//			probe_interval <duration>
//			slow_start     <duration>
//			max_body       <bytes>
//		}
//		error_shed    [off] {
//			threshold   <ratio>
//			min_samples <n>
//			window      <duration>
//		}
//		fleet {                 # share limits with other gateways (fleet.go)
//			redis <url>
//			name  <instance-name>
//		}
//		cors          [off] {   # see cors.go
//			allow_origin   <origin>
//			allow_methods  <method>...
//			allow_headers  <header>...
//			expose_headers <header>...
//		}
//	}
//
// Unknown and repeated subdirectives are errors naming file and line.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		dir := d.Val()
		key := dir
		if dir == "class" {
			if !d.NextArg() {
				return d.ArgErr()
			}
			key = "class " + d.Val()
			d.Prev()
		}
		if seen[key] {
			return d.Errf("%s given twice", key)
		}
		seen[key] = true
		var err error
		switch dir {
		case "zone":
			h.Zone, err = oneString(d)
		case "max_inflight":
			h.MaxInflight, err = intArg(d)
		case "queue_timeout":
			h.QueueTimeout, err = durationArg(d)
		case "lifo_after":
			h.LIFOAfter, err = durationArg(d)
		case "retry_after":
			h.RetryAfter, err = retryAfterArgs(d)
		case "handle_errors":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.HandleErrors = true
		case "class":
			err = h.unmarshalClass(d)
		case "herd":
			err = h.unmarshalHerd(d)
		case "shed":
			err = h.unmarshalShed(d)
		case "health_dial":
			h.HealthDial, err = oneString(d)
		case "adaptive":
			h.Adaptive, err = unmarshalOnOff(d)
		case "shadow":
			h.Shadow, err = unmarshalOnOff(d)
		case "ride_through":
			err = h.unmarshalRideThrough(d)
		case "error_shed":
			err = h.unmarshalErrorShed(d)
		case "cors":
			err = h.unmarshalCORS(d)
		case "state_file":
			h.StateFile, err = oneString(d)
		case "fleet":
			err = h.unmarshalFleet(d) // fleet.go
		case "max_toggle_duration":
			var dur *caddy.Duration
			if dur, err = durationArg(d); err == nil {
				if *dur <= 0 {
					return d.Errf("max_toggle_duration must be positive")
				}
				h.MaxToggleDuration = *dur
			}
		default:
			return d.Errf("unknown mxgate subdirective %q", dir)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) unmarshalHerd(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	hc := new(HerdConfig)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] {
			return d.Errf("herd: %s given twice", dir)
		}
		seen[dir] = true
		switch dir {
		case "window":
			w, err := durationArg(d)
			if err != nil {
				return err
			}
			hc.Window = *w
		case "min_users":
			n, err := intArg(d)
			if err != nil {
				return err
			}
			if *n < 1 {
				return d.Errf("herd: min_users must be at least 1 (use `off` to disable)")
			}
			hc.MinUsers = *n
		case "retry_after":
			ra, err := retryAfterArgs(d)
			if err != nil {
				return err
			}
			hc.RetryAfter = ra
		case "off":
			if d.NextArg() {
				return d.ArgErr()
			}
			hc.Disabled = true
		default:
			return d.Errf("herd: unknown subdirective %q", dir)
		}
	}
	h.Herd = hc
	return nil
}

func (h *Handler) unmarshalShed(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	for _, a := range args {
		if _, err := matrix.ParseClass(a); err != nil {
			return d.Err(err.Error())
		}
	}
	h.Shed = append(h.Shed, args...)
	return nil
}

func retryAfterArgs(d *caddyfile.Dispenser) (*RetryAfter, error) {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return nil, d.Errf("retry_after wants two durations: MIN MAX")
	}
	lo, err1 := caddy.ParseDuration(args[0])
	hi, err2 := caddy.ParseDuration(args[1])
	if err1 != nil || err2 != nil || lo <= 0 || hi < lo {
		return nil, d.Errf("retry_after wants durations 0 < MIN <= MAX, got %q %q", args[0], args[1])
	}
	return &RetryAfter{Min: caddy.Duration(lo), Max: caddy.Duration(hi)}, nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
