// Command mxbench replays the homeserver incidents against the simulated
// homeserver through each peer and writes a markdown report.
//
//	mxbench -scenario all -peer direct,mxgate-inprocess,caddy,mxgate,nginx,haproxy -out bench/results
//
// Peers whose program is not installed are skipped with a message. External
// peers (caddy, mxgate, nginx, haproxy) run with real-time timeouts, so
// compare them at -scale 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mxgate/mxgate/bench/scenario"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	name := flag.String("scenario", "all", "herd|stacked|redeploy|steady|all")
	peers := flag.String("peer", "direct,mxgate-inprocess", "comma-separated peers: "+strings.Join(scenario.PeerNames, ", "))
	seed := flag.Uint64("seed", 1, "random seed of every client")
	scale := flag.Float64("scale", 1, "run the model this many times faster than real time")
	clients := flag.Int("clients", 100, "background clients")
	herd := flag.Int("herd", 500, "herd clients")
	duration := flag.Duration("duration", 0, "override each scenario's length (model time)")
	out := flag.String("out", "", "directory for SCENARIO.md and SVG plots (default: stdout only)")
	bin := flag.String("mxgate-bin", "", "mxgate binary for the caddy and mxgate peers (default: go build ./cmd/mxgate)")
	classes := flag.String("classes", "", `mxgate-inprocess's class settings over the defaults, as JSON: '{"room_state":{"max_inflight":2}}'`)
	flag.Parse()
	var classSettings map[string]json.RawMessage
	if *classes != "" {
		if err := json.Unmarshal([]byte(*classes), &classSettings); err != nil {
			return fmt.Errorf("-classes: %w", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer scenario.RemoveBuiltBinaries()

	names := scenario.Names
	if *name != "all" {
		names = []string{*name}
	}
	opts := scenario.Options{Seed: *seed, Scale: *scale, Clients: *clients, HerdClients: *herd, Duration: *duration}
	var results []*scenario.Result
	for _, sc := range names {
		for _, pn := range strings.Split(*peers, ",") {
			peer, err := scenario.NewPeer(strings.TrimSpace(pn), scenario.PeerOptions{Scale: *scale, MxgateBinary: *bin, Classes: classSettings})
			if err != nil {
				return err
			}
			if *scale != 1 && scenario.IsExternal(peer) {
				log.Printf("warning: %s runs real-time timeouts; -scale %g distorts its result", peer.Name(), *scale)
			}
			log.Printf("running %s through %s", sc, peer.Name())
			start := time.Now()
			res, err := scenario.Run(ctx, sc, peer, opts)
			if errors.Is(err, scenario.ErrNotInstalled) {
				log.Printf("skipping %s: %v (bench/install-peers.sh installs it)", peer.Name(), err)
				continue
			}
			if err != nil {
				return fmt.Errorf("%s through %s: %w", sc, peer.Name(), err)
			}
			log.Printf("done in %s", time.Since(start).Round(time.Millisecond))
			results = append(results, res)
		}
	}

	var b strings.Builder
	scenario.WriteMarkdown(&b, results)
	fmt.Print(b.String())
	if *out == "" {
		return nil
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	cmd := "go run ./bench/cmd/mxbench " + strings.Join(os.Args[1:], " ")
	report := fmt.Sprintf("# mxbench results\n\nReproduce with:\n\n```\n%s\n```\n\n%s", cmd, b.String())
	if err := os.WriteFile(filepath.Join(*out, *name+".md"), []byte(report), 0o644); err != nil {
		return err
	}
	return scenario.WritePlots(*out, results)
}
