// Command mxgate is Caddy with the mxgate admission-control handler compiled
// in, plus mxgate's own subcommands: gateway (no Caddyfile needed), status,
// shed, restore and demo. Every Caddy command (run, adapt, reload,
// list-modules, ...) works as in Caddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/mxgate/mxgate/caddymodule"
)

func main() {
	caddycmd.Main()
}
