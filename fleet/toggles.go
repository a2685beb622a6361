package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/mxgate/mxgate/limiter"
)

// Toggles is a limiter.ToggleStore shared by the fleet. Redis holds the
// fleet's operator toggles (a hash of toggle key → JSON); this gateway reads
// only its local copy, the store it wraps (normally its state file), so the
// request path never waits for Redis and a restart without Redis starts
// from the last copy.
//
// A change made here goes to the local copy at once and to Redis within the
// call deadline, followed by a pub/sub message on which every gateway
// resyncs; a periodic resync catches missed messages. A change Redis does
// not take is kept pending and pushed when Redis is back (last writer
// wins). Config toggles (`shed CLASS`) belong to each gateway's own config
// and never go to Redis. Toggles read from Redis are checked as a state
// file's are (limiter.CheckToggle); expired ones are deleted there.
type Toggles struct {
	c       *client
	local   limiter.ToggleStore
	maxLife time.Duration
	log     *slog.Logger

	mu      sync.Mutex                 // serialises changes and resyncs
	pending map[string]*limiter.Toggle // not yet in Redis: a toggle to put, nil to remove
}

// Put implements limiter.ToggleStore. A *limiter.NotPersistedError from the
// local store is passed on; Redis being unreachable is not an error (the
// change is pending, and Status shows it).
func (s *Toggles) Put(t limiter.Toggle) error {
	err := s.local.Put(t)
	var npe *limiter.NotPersistedError
	if (err != nil && !errors.As(err, &npe)) || t.FromConfig {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending[t.Key()] = &t
	s.flushLocked()
	return err
}

// Remove implements limiter.ToggleStore.
func (s *Toggles) Remove(key string, now time.Time) (bool, error) {
	fromConfig := false
	for _, t := range s.local.Active(now) {
		if t.Key() == key {
			fromConfig = t.FromConfig
		}
	}
	removed, err := s.local.Remove(key, now)
	var npe *limiter.NotPersistedError
	if (err != nil && !errors.As(err, &npe)) || fromConfig {
		return removed, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending[key] = nil
	s.flushLocked()
	return removed, err
}

// Active implements limiter.ToggleStore from the local copy.
func (s *Toggles) Active(now time.Time) []limiter.Toggle { return s.local.Active(now) }

// Version implements limiter.ToggleStore.
func (s *Toggles) Version() uint64 { return s.local.Version() }

// Pending is how many local changes Redis has not taken yet.
func (s *Toggles) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

func (s *Toggles) hashKey() string { return s.c.key("toggles") }

// flushLocked pushes the pending changes in one transaction and announces
// them; on failure they stay pending.
func (s *Toggles) flushLocked() error {
	if len(s.pending) == 0 {
		return nil
	}
	err := s.c.call(OpToggle, func(ctx context.Context) error {
		pipe := s.c.rdb.TxPipeline()
		for k, t := range s.pending {
			if t == nil {
				pipe.HDel(ctx, s.hashKey(), k)
				continue
			}
			b, err := json.Marshal(t)
			if err != nil {
				return err
			}
			pipe.HSet(ctx, s.hashKey(), k, b)
		}
		pipe.Publish(ctx, s.hashKey(), "changed")
		_, err := pipe.Exec(ctx)
		return err
	})
	if err == nil {
		clear(s.pending)
	}
	return err
}

// sync makes the local copy the fleet's set at now: pending changes are
// pushed first, then every operator toggle in Redis is put locally and
// every local operator toggle Redis no longer holds is removed. On failure
// the local copy stays as it was.
func (s *Toggles) sync(now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushLocked(); err != nil {
		return err
	}
	var raw map[string]string
	err := s.c.call(OpSync, func(ctx context.Context) error {
		var err error
		raw, err = s.c.rdb.HGetAll(ctx, s.hashKey()).Result()
		return err
	})
	if err != nil {
		return err
	}
	remote := make(map[string]limiter.Toggle, len(raw))
	var expired []string
	for k, v := range raw {
		var t limiter.Toggle
		if err := json.Unmarshal([]byte(v), &t); err != nil || t.Key() != k {
			s.log.Warn("mxgate fleet: ignoring an unreadable shared toggle", "key", k)
			continue
		}
		if !now.Before(t.Until) {
			expired = append(expired, k)
			continue
		}
		t.FromConfig = false
		t, err := limiter.CheckToggle(t, now, s.maxLife)
		if err != nil {
			s.log.Warn("mxgate fleet: ignoring an invalid shared toggle", "key", k, "why", err.Error())
			continue
		}
		remote[k] = t
	}
	if len(expired) > 0 { // best effort: the next resync tries again
		_ = s.c.call(OpSync, func(ctx context.Context) error {
			return s.c.rdb.HDel(ctx, s.hashKey(), expired...).Err()
		})
	}
	have := make(map[string]limiter.Toggle)
	for _, t := range s.local.Active(now) {
		have[t.Key()] = t
	}
	for k, t := range remote {
		if cur, ok := have[k]; !ok || !sameToggle(cur, t) {
			s.apply(s.local.Put(t))
		}
	}
	for k, t := range have {
		if _, ok := remote[k]; !ok && !t.FromConfig {
			_, err := s.local.Remove(k, now)
			s.apply(err)
		}
	}
	return nil
}

// apply logs a local store's failure to take a synced change.
func (s *Toggles) apply(err error) {
	if err != nil {
		s.log.Warn("mxgate fleet: local toggle copy", "error", err.Error())
	}
}

func sameToggle(a, b limiter.Toggle) bool {
	return a.Target == b.Target && a.Priority == b.Priority && a.Mode == b.Mode && a.Reason == b.Reason &&
		a.Since.Equal(b.Since) && a.Until.Equal(b.Until) && a.FromConfig == b.FromConfig
}

var _ limiter.ToggleStore = (*Toggles)(nil)
