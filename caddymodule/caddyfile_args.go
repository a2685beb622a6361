package caddymodule

// The argument readers every Caddyfile subdirective parser shares.

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func oneString(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

func intArg(d *caddyfile.Dispenser) (*int, error) {
	s, err := oneString(d)
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return nil, d.Errf("%s: want a non-negative integer, got %q", d.Val(), s)
	}
	return &n, nil
}

func durationArg(d *caddyfile.Dispenser) (*caddy.Duration, error) {
	s, err := oneString(d)
	if err != nil {
		return nil, err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur < 0 {
		return nil, d.Errf("want a non-negative duration such as 10s, got %q", s)
	}
	cd := caddy.Duration(dur)
	return &cd, nil
}

// unmarshalOnOff reads `DIRECTIVE` (on) or `DIRECTIVE off`.
func unmarshalOnOff(d *caddyfile.Dispenser) (*bool, error) {
	dir := d.Val()
	on := true
	if d.NextArg() {
		if d.Val() != "off" {
			return nil, d.Errf("%s takes no argument but `off`, got %q", dir, d.Val())
		}
		on = false
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	return &on, nil
}

// offOrBlock reads the optional `off` argument of a directive that may
// otherwise have a block, and reports whether it was given.
func offOrBlock(d *caddyfile.Dispenser, what string) (off bool, err error) {
	if !d.NextArg() {
		return false, nil
	}
	if d.Val() != "off" || d.NextArg() {
		return false, d.Errf("%s: want `%s`, `%s off` or a block", what, what, what)
	}
	if d.NextBlock(d.Nesting()) {
		return false, d.Errf("%s off takes no block", what)
	}
	return true, nil
}
