package scenario

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/bench/simclient"
	"github.com/mxgate/mxgate/bench/simhs"
)

// Names lists the scenarios in report order.
var Names = []string{"steady", "herd", "stacked", "redeploy"}

// Room IDs of the simulated homeserver.
const (
	bigRoom    = "!big:sim.test"
	roomsCount = 10
)

// Groups of clients in records.
const (
	groupBackground = "background"
	groupHerd       = "herd"
	groupCatchUp    = "catch_up"
)

// definition is one scenario: its length and the incident it injects.
type definition struct {
	duration time.Duration
	// cause starts the incident at o.CauseAt (model time, from the start of
	// the run) and returns when it ended (model time from the start); ok is
	// false if there is no incident.
	cause func(ctx context.Context, e *env) (end time.Duration, ok bool)
}

var definitions = map[string]definition{
	"steady":   {duration: 60 * time.Second},
	"herd":     {duration: 180 * time.Second, cause: herdCause},
	"stacked":  {duration: 180 * time.Second, cause: stackedCause},
	"redeploy": {duration: 90 * time.Second, cause: redeployCause},
}

// env is what a running scenario can reach.
type env struct {
	o       Options
	hs      *simhs.Server
	copts   simclient.Options
	start   time.Time
	clients sync.WaitGroup
	herdOK  atomic.Int64

	herdMu   sync.Mutex
	herdDone map[simclient.Family][]time.Duration // model time from the cause to resynced
}

// herdResynced records that a herd client of family f resynced now.
func (e *env) herdResynced(f simclient.Family) {
	e.herdOK.Add(1)
	at := e.sinceStart(time.Now()) - e.o.CauseAt
	e.herdMu.Lock()
	defer e.herdMu.Unlock()
	if e.herdDone == nil {
		e.herdDone = map[simclient.Family][]time.Duration{}
	}
	e.herdDone[f] = append(e.herdDone[f], at)
}

// sinceStart is the model time elapsed since the run began.
func (e *env) sinceStart(t time.Time) time.Duration {
	return time.Duration(float64(t.Sub(e.start)) * e.o.Scale)
}

// waitUntil sleeps until model time at; false if ctx ended first.
func (e *env) waitUntil(ctx context.Context, at time.Duration) bool {
	t := time.NewTimer(time.Until(e.start.Add(e.o.real(at))))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// startBackground starts the steady population, already logged in and
// synced (their sync loops resume from a token; a population doing initial
// syncs at once would be a herd of its own): each client staggers in over
// the first 5 s, then runs a sync loop, a send loop and a read loop.
func (e *env) startBackground(ctx context.Context) {
	r := rand.New(rand.NewPCG(e.o.Seed, 0xb0))
	for i := range e.o.Clients {
		c := simclient.New(i, e.o.Seed, groupBackground, e.copts)
		room := backgroundRoom(i)
		stagger := time.Duration(r.Int64N(int64(5 * time.Second)))
		e.clients.Go(func() {
			if e.waitUntil(ctx, stagger) {
				c.SyncLoop(ctx, "s0")
			}
		})
		e.clients.Go(func() { c.SendLoop(ctx, room, e.o.SendEvery) })
		e.clients.Go(func() { c.ReadLoop(ctx, room, e.o.ReadEvery, 20) })
	}
}

// backgroundRoom is the room background client i chats and reads in.
func backgroundRoom(i int) string { return fmt.Sprintf("!room%d:sim.test", i%roomsCount) }

// backgroundRoomMembers sizes the background's rooms for a population of
// clients, so that the homeserver prices their state by their members.
func backgroundRoomMembers(clients int) map[string]int {
	members := make(map[string]int, roomsCount)
	for i := range clients {
		members[backgroundRoom(i)]++
	}
	return members
}

// herdFamilies is the herd's mix of client SDKs, one in four each: the
// mobile ones (Element X, legacy Element Android and iOS) resync the big
// room's state, then do a full-state sync; Element Web (js-sdk) reloads: an
// initial sync, retried the js-sdk way.
var herdFamilies = [...]simclient.Family{simclient.FamilyElementX, simclient.FamilyElementAndroid,
	simclient.FamilyIOS, simclient.FamilyJSSDK}

// herdCause: HerdClients clients resync the big room within one second.
// They are users who were online before (an odd event in the room sends
// them all back to the start): each synced once in the first half of the
// time before the herd, outside the baseline window.
func herdCause(ctx context.Context, e *env) (time.Duration, bool) {
	familyOf := func(i int) simclient.Family { return herdFamilies[i%len(herdFamilies)] }
	herd := make([]*simclient.Client, e.o.HerdClients)
	online := rand.New(rand.NewPCG(e.o.Seed, 0x4f))
	for i := range herd {
		o := e.copts
		o.Family = familyOf(i)
		c := simclient.New(e.o.Clients+i, e.o.Seed, groupHerd, o)
		herd[i] = c
		delay := e.o.CauseAt/4 + time.Duration(online.Int64N(int64(e.o.CauseAt/4)))
		e.clients.Go(func() { c.SyncOnce(ctx, delay) })
	}
	if !e.waitUntil(ctx, e.o.CauseAt) {
		return 0, false
	}
	r := rand.New(rand.NewPCG(e.o.Seed, 0x4e)) // spread over one second
	for i, c := range herd {
		family := familyOf(i)
		delay := time.Duration(r.Int64N(int64(time.Second)))
		e.clients.Go(func() {
			ok := false
			if family == simclient.FamilyJSSDK {
				ok = c.InitialSync(ctx, delay)
			} else {
				ok = c.Resync(ctx, bigRoom, delay)
			}
			if ok {
				e.herdResynced(family)
			}
		})
	}
	return e.o.CauseAt + time.Second, true
}

// stackedCause: a few users back after months away set their read markers;
// each write holds a DB connection and the table lock for 30 s. The cause
// ends when the last one lets go.
func stackedCause(ctx context.Context, e *env) (time.Duration, bool) {
	if !e.waitUntil(ctx, e.o.CauseAt) {
		return 0, false
	}
	e.hs.ArmSlowWrites(e.o.SlowWrites)
	var wg sync.WaitGroup
	for i := range e.o.SlowWrites {
		c := simclient.New(e.o.Clients+e.o.HerdClients+i, e.o.Seed, groupCatchUp, e.copts)
		wg.Go(func() { c.MarkRead(ctx, bigRoom, time.Duration(i)*100*time.Millisecond) })
	}
	wg.Wait()
	if end := e.hs.Stats().LastSlowWriteEnd; !end.IsZero() {
		return e.sinceStart(end), true
	}
	return e.sinceStart(time.Now()), true
}

// redeployCause: the homeserver restarts and is down for 5 s.
func redeployCause(ctx context.Context, e *env) (time.Duration, bool) {
	if !e.waitUntil(ctx, e.o.CauseAt) {
		return 0, false
	}
	if err := e.hs.Restart(5 * time.Second); err != nil {
		return 0, false
	}
	return e.sinceStart(time.Now()), true
}
