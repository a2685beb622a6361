// Command simhs runs the simulated homeserver of package bench/simhs on a
// loopback address until interrupted.
//
//	simhs -listen 127.0.0.1:8008 -db-pool 10 -max-fds 1024 -cost room_state=db:250ms,cpu:80ms,body:3145728
//
// With -trivial it instead answers every request at once with a tiny JSON
// body: the upstream for proxy overhead measurements.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mxgate/mxgate/bench/simhs"
	"github.com/mxgate/mxgate/matrix"
)

func main() {
	d := simhs.DefaultConfig()
	cfg := d
	listen := flag.String("listen", "127.0.0.1:8008", "loopback address to listen on")
	trivial := flag.Bool("trivial", false, "answer every request at once with {} (overhead upstream)")
	slow := flag.Int("slow-writes", 0, "arm this many slow read-marker writes at start")
	flag.IntVar(&cfg.DBPool, "db-pool", d.DBPool, "DB connection pool size")
	flag.IntVar(&cfg.MaxFDs, "max-fds", d.MaxFDs, "most client connections open at once")
	flag.DurationVar(&cfg.WedgeAfter, "wedge-after", d.WedgeAfter, "time at the fd limit before the process wedges")
	flag.Float64Var(&cfg.CPUCores, "cpu-cores", d.CPUCores, "CPU capacity shared by all requests")
	flag.Float64Var(&cfg.ContentionPerActive, "contention", d.ContentionPerActive, "CPU slowdown per active request (negative: off)")
	flag.DurationVar(&cfg.SyncTimeout, "sync-timeout", d.SyncTimeout, "long-poll wait when /sync has no timeout")
	flag.DurationVar(&cfg.MaxSyncTimeout, "max-sync-timeout", d.MaxSyncTimeout, "cap on the /sync timeout parameter")
	flag.DurationVar(&cfg.SlowWriteHold, "slow-write-hold", d.SlowWriteHold, "how long a slow read-marker write holds the lock")
	flag.Float64Var(&cfg.TimeScale, "scale", d.TimeScale, "run the model this many times faster than real time")
	flag.Var((*costFlag)(&cfg.Costs), "cost", "override one class's cost: CLASS=db:DUR,cpu:DUR,body:BYTES,lock:BOOL (repeatable)")
	flag.Parse()

	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("simhs: -listen must be a loopback address, got %q", *listen)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *trivial {
		serveTrivial(ctx, *listen)
		return
	}
	s := simhs.New(cfg)
	s.ArmSlowWrites(*slow)
	url, err := s.Start(*listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("simhs: serving on %s", url)
	<-ctx.Done()
	st := s.Stats()
	_ = s.Close()
	log.Printf("simhs: peak concurrency %d, peak fds %d, completed %d, wasted %d", st.Peak, st.PeakFDs, st.Completed, st.Wasted)
}

func serveTrivial(ctx context.Context, addr string) {
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// As Synapse marks every JSON answer: coalescing may not cache it,
		// so a coalesced class is proxied on every request.
		w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
		_, _ = w.Write([]byte("{}"))
	})}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	log.Printf("simhs: trivial upstream on http://%s", addr)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// costFlag parses CLASS=db:DUR,cpu:DUR,body:BYTES,lock:BOOL into the table.
type costFlag [matrix.NumClasses]simhs.Cost

func (f *costFlag) String() string { return "" }

func (f *costFlag) Set(v string) error {
	name, spec, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want CLASS=key:value,..., got %q", v)
	}
	class, err := matrix.ParseClass(name)
	if err != nil {
		return err
	}
	c := f[class]
	for _, kv := range strings.Split(spec, ",") {
		k, val, _ := strings.Cut(kv, ":")
		switch k {
		case "db":
			c.DB, err = time.ParseDuration(val)
		case "cpu":
			c.CPU, err = time.ParseDuration(val)
		case "body":
			c.BodyBytes, err = strconv.Atoi(val)
		case "lock":
			c.Lock, err = strconv.ParseBool(val)
		default:
			err = fmt.Errorf("unknown cost key %q (db, cpu, body, lock)", k)
		}
		if err != nil {
			return fmt.Errorf("-cost %s: %w", v, err)
		}
	}
	f[class] = c
	return nil
}
