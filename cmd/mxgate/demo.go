package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/bench/scenario"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "demo",
		Usage: "[--clients <n>] [--seed <n>]",
		Short: "Shows a thundering herd against a simulated homeserver, with and without mxgate",
		Long: `
Starts a simulated Synapse-like homeserver on 127.0.0.1, lets a herd of
clients resync a big room's state at once, first straight to the homeserver
and then through mxgate (built-in defaults), and prints what the homeserver
and the clients saw in each case, what each figure means, and a sentence
with the headline ratios. Needs nothing installed and talks only to
loopback; the two runs take about 15 s. Figures vary from run to run.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().Int("clients", 500, "clients in the herd")
			cmd.Flags().Int("seed", 1, "random seed of the clients' behaviour")
			cmd.Args = cobra.NoArgs
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdDemo)
		},
	})
}

func cmdDemo(fl caddycmd.Flags) (int, error) {
	if fl.Int("clients") < 1 {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--clients must be at least 1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := scenario.RunDemo(ctx, os.Stdout, scenario.DemoOptions{Seed: uint64(fl.Int("seed")), HerdClients: fl.Int("clients")})
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return caddy.ExitCodeSuccess, nil
}
