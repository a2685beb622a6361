package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/limiter"
)

// DefaultResyncInterval is how often a gateway re-reads the fleet's toggles
// even without a pub/sub message: a message lost while reconnecting is made
// up for within it.
const DefaultResyncInterval = 500 * time.Millisecond

// Config configures a Fleet. Zero durations take the defaults.
type Config struct {
	// Redis is the redis:// (or rediss://) URL of the shared Redis or
	// Valkey. Required.
	Redis string
	// Name identifies this gateway in the fleet; it must differ between the
	// gateways. Required.
	Name string
	// Zone namespaces the keys: gateways share the state of the zone of the
	// same name.
	Zone string
	// CallTimeout bounds every Redis call (DefaultCallTimeout).
	CallTimeout time.Duration
	// HeartbeatInterval and MemberTTL: see DefaultHeartbeatInterval.
	HeartbeatInterval, MemberTTL time.Duration
	// ResyncInterval: see DefaultResyncInterval.
	ResyncInterval time.Duration
	// MaxToggleLife bounds toggles read from Redis (limiter.CheckToggle).
	MaxToggleLife time.Duration
	// Metrics receives the fleet's measurements; nil records none.
	Metrics *Metrics
	// Logger receives fleet events; nil discards them.
	Logger *slog.Logger
	// Now is the clock of the background loop; nil uses time.Now.
	Now func() time.Time
}

// Fleet is one gateway's membership in a fleet: the stores it shares
// (Toggles, Rates), the herd count (DistinctUsers) and its cap share
// (Share). Build it with New, wrap the local stores, then Start; Close
// leaves the fleet. Safe for concurrent use.
type Fleet struct {
	cfg     Config
	c       *client
	members *members
	toggles *Toggles // nil until Toggles is called

	verdicts     chan TokenVerdict // nil unless ShareVerdicts was called (tokens.go)
	applyVerdict func(TokenVerdict)

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
	started  bool
}

// New prepares a fleet membership; it does not talk to Redis before Start.
func New(cfg Config) (*Fleet, error) {
	if cfg.Redis == "" || cfg.Name == "" {
		return nil, errors.New("fleet: a Redis URL and an instance name are required")
	}
	if cfg.Zone == "" {
		cfg.Zone = "default"
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c, err := newClient(cfg.Redis, cfg.Zone, cfg.CallTimeout, cfg.Metrics)
	if err != nil {
		return nil, err
	}
	c.metrics.setUp(false)
	return &Fleet{cfg: cfg, c: c, members: newMembers(c, cfg.Name, cfg.MemberTTL),
		stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Toggles wraps local, this gateway's own toggle store, as the fleet's
// shared store. Call it once, before Start.
func (f *Fleet) Toggles(local limiter.ToggleStore) *Toggles {
	f.toggles = &Toggles{c: f.c, local: local, maxLife: f.cfg.MaxToggleLife, log: f.cfg.Logger,
		pending: make(map[string]*limiter.Toggle)}
	return f.toggles
}

// Rates wraps local, this gateway's own rate store, as the fleet's shared
// one; local serves (at rate ÷ N) while Redis is unreachable.
func (f *Fleet) Rates(local limiter.RateStore) *Rates {
	return &Rates{c: f.c, members: f.members, local: local}
}

// Share is this gateway's part of cap (0 = no cap) among the live gateways
// last seen: see ShareOf. While Redis is unreachable it stays the last one
// computed (fail-static).
func (f *Fleet) Share(cap int) int {
	names, rank, _, _ := f.members.view()
	return ShareOf(cap, rank, len(names))
}

// HerdShare is this gateway's part of a herd allowance among the live
// gateways last seen: see HerdShareOf.
func (f *Fleet) HerdShare(allowance int) int {
	names, rank, _, _ := f.members.view()
	return HerdShareOf(allowance, rank, len(names))
}

// SharesVersion changes whenever the live gateways change, and with them
// the shares.
func (f *Fleet) SharesVersion() uint64 {
	_, _, v, _ := f.members.view()
	return v
}

// Start joins the fleet: one heartbeat, the toggle subscription and one
// toggle sync right away (each bounded by the call deadline; failures leave
// the local fallbacks in force), then a background loop of heartbeats,
// pub/sub-triggered and periodic resyncs until Close. Once Start returns
// with Redis up, every toggle change announced from then on reaches this
// gateway.
func (f *Fleet) Start() {
	now := f.cfg.Now()
	sub := f.c.rdb.Subscribe(contextUntil(f.stop), f.c.key("toggles"), f.c.key("tokens"))
	if err := f.members.heartbeat(now); err != nil {
		f.cfg.Logger.Warn("mxgate fleet: Redis unreachable at start, running on local limits",
			"redis", RedactURL(f.cfg.Redis), "error", err.Error())
	} else {
		// Wait for the subscription's confirmation, so that a change made
		// right after Start is not announced before we listen.
		ctx, cancel := context.WithTimeout(context.Background(), f.c.timeout)
		_, _ = sub.ReceiveTimeout(ctx, f.c.timeout)
		cancel()
		f.syncToggles(now)
	}
	f.started = true
	go f.run(sub)
}

// Close leaves the fleet (so the others re-balance at once) and stops the
// background loop. It is idempotent.
func (f *Fleet) Close() {
	f.stopOnce.Do(func() {
		close(f.stop)
		if f.started {
			<-f.done
		}
		f.members.leave()
		_ = f.c.rdb.Close()
	})
}

func (f *Fleet) run(sub *redis.PubSub) {
	defer close(f.done)
	defer sub.Close()
	msgs := sub.Channel() // go-redis resubscribes by itself after Redis returns
	beat := time.NewTicker(f.cfg.HeartbeatInterval)
	defer beat.Stop()
	resync := time.NewTicker(f.cfg.ResyncInterval)
	defer resync.Stop()
	for {
		select {
		case <-f.stop:
			return
		case msg := <-msgs:
			if msg.Channel == f.c.key("tokens") {
				if f.applyVerdict != nil {
					parseVerdicts(msg.Payload, f.cfg.Name, f.applyVerdict)
				}
				continue
			}
			f.syncToggles(f.cfg.Now())
		case v := <-f.verdicts: // nil (never ready) without ShareVerdicts
			f.publishVerdicts(v)
		case <-resync.C:
			f.syncToggles(f.cfg.Now())
		case <-beat.C:
			wasUp := f.c.up.Load()
			if err := f.members.heartbeat(f.cfg.Now()); err != nil && wasUp {
				f.cfg.Logger.Warn("mxgate fleet: Redis unreachable, keeping the last shares and using local limits",
					"redis", RedactURL(f.cfg.Redis), "error", err.Error())
			} else if err == nil && !wasUp {
				f.cfg.Logger.Info("mxgate fleet: Redis reachable, sharing limits again", "instances", f.members.count())
			}
		}
	}
}

func (f *Fleet) syncToggles(now time.Time) {
	if f.toggles != nil && f.c.up.Load() {
		_ = f.toggles.sync(now)
	}
}

// String names the fleet membership for logs.
func (f *Fleet) String() string {
	return fmt.Sprintf("%s@%s", f.cfg.Name, RedactURL(f.cfg.Redis))
}
