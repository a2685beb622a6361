package limiter

import (
	"container/heap"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"
)

// admissionLoop drives an Admission's adaptive classes against modelled
// upstreams in virtual time: clients closed-loop clients per class send a
// request whenever Acquire has room (queues are 0, so Acquire never
// blocks), each takes its upstream's latency for the in-flight count it
// started with, and its ticket's Done feeds the class's gradient. No real
// time passes.
type admissionLoop struct {
	a         *Admission
	clock     *testkit.Clock
	upstreams []*queueingUpstream
	clients   int
	running   []int // per class
	pending   ticketHeap
}

type pendingTicket struct {
	t    Ticket
	done time.Time
}

type ticketHeap []pendingTicket

func (h ticketHeap) Len() int           { return len(h) }
func (h ticketHeap) Less(i, j int) bool { return h[i].done.Before(h[j].done) }
func (h ticketHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *ticketHeap) Push(x any)        { *h = append(*h, x.(pendingTicket)) }
func (h *ticketHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

func newAdmissionLoop(clients int, upstreams ...*queueingUpstream) *admissionLoop {
	classes := make([]ClassLimits, len(upstreams))
	for i := range classes {
		classes[i] = ClassLimits{MaxInflight: 64, Adaptive: true}
	}
	clock := testkit.NewClock(simEpoch)
	return &admissionLoop{a: NewAdmission(Config{Classes: classes}, clock.Now), clock: clock,
		upstreams: upstreams, clients: clients, running: make([]int, len(upstreams))}
}

// run completes n requests of class (others keep going alongside) and
// returns that class's caps after each of its completions in the last 40%.
func (l *admissionLoop) run(class, n int) []int {
	var caps []int
	for done := 0; done < n; {
		for c := range l.upstreams {
			for l.running[c] < l.clients {
				t, err := l.a.Acquire(context.Background(), c, LaneNormal)
				if err != nil {
					break
				}
				l.running[c]++
				heap.Push(&l.pending, pendingTicket{t: t, done: l.clock.Now().Add(l.upstreams[c].latency(l.running[c]))})
			}
		}
		p := heap.Pop(&l.pending).(pendingTicket)
		l.clock.Advance(p.done.Sub(l.clock.Now()))
		p.t.Done(Result{End: p.done, Sample: true, Evidence: EvidenceAnswered})
		l.running[p.t.class]--
		if p.t.class == class {
			done++
			if done >= n*6/10 {
				_, cs := l.a.Snapshot()
				caps = append(caps, cs[class].Cap)
			}
		}
	}
	return caps
}

func medianOf(xs []int) int {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func within(t *testing.T, what string, got, want int) {
	t.Helper()
	if float64(got) < 0.5*float64(want) || float64(got) > 1.5*float64(want) {
		t.Fatalf("%s: cap %d, want %d ±50%%", what, got, want)
	}
}

// An adaptive class's cap, fed by nothing but its tickets' Done, finds the
// upstream's capacity (N workers) with 48 closed-loop clients pushing far
// past it, and follows a change of N both ways.
func TestAdmissionAdaptiveCapFollowsUpstreamCapacity(t *testing.T) {
	up := &queueingUpstream{base: 5 * time.Millisecond, workers: 8}
	l := newAdmissionLoop(48, up)
	within(t, "N=8", medianOf(l.run(0, 2500)), 8)
	up.workers = 16
	within(t, "N=16", medianOf(l.run(0, 3000)), 16)
	up.workers = 4
	within(t, "N=4", medianOf(l.run(0, 2000)), 4)
	_, cs := l.a.Snapshot()
	if !cs[0].Adaptive || cs[0].AdaptiveLimit == 0 || cs[0].BaselineRTT == 0 {
		t.Fatalf("snapshot does not show the adaptive limit: %+v", cs[0])
	}
}

// A latency spike at one class's upstream shrinks that class's cap only.
func TestAdmissionAdaptiveSpikeShrinksOnlyThatClass(t *testing.T) {
	history := &queueingUpstream{base: 5 * time.Millisecond, workers: 8}
	state := &queueingUpstream{base: 5 * time.Millisecond, workers: 8}
	l := newAdmissionLoop(32, history, state)
	h := medianOf(l.run(0, 2500))
	s := medianOf(l.run(1, 2500))
	within(t, "history before", h, 8)
	within(t, "room_state before", s, 8)
	history.base = 20 * time.Millisecond
	hs := l.run(0, 300)
	if got := hs[len(hs)-1]; got > h/2 {
		t.Fatalf("history cap %d after a 4x latency spike, want at most %d", got, h/2)
	}
	if got := medianOf(l.run(1, 1500)); got < s*3/4 {
		t.Fatalf("room_state cap fell from %d to %d during history's spike", s, got)
	}
}

// A class that is not adaptive keeps its configured cap whatever its
// tickets report; Done on a refused ticket, or twice, does nothing.
func TestTicketDoneIsSafe(t *testing.T) {
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 3}), nil)
	tk, err := a.Acquire(context.Background(), 0, LaneNormal)
	if err != nil {
		t.Fatal(err)
	}
	tk.Done(Result{End: time.Now(), Sample: true})
	tk.Done(Result{End: time.Now(), Sample: true})
	var refused Ticket
	refused.Done(Result{})
	if _, cs := a.Snapshot(); cs[0].Inflight != 0 || cs[0].Cap != 3 || cs[0].Adaptive {
		t.Fatalf("after Done twice: %+v", cs[0])
	}
}

// Admit admits over the cap at once; its ticket's Done frees the slot like
// any other, and waiters get slots only once the class is below its cap.
func TestAdmitOverCap(t *testing.T) {
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 1, Queue: 1, QueueTimeout: time.Minute}), nil)
	first, err := a.Acquire(context.Background(), 0, LaneNormal)
	if err != nil {
		t.Fatal(err)
	}
	over := a.Admit(0)
	if _, cs := a.Snapshot(); cs[0].Inflight != 2 || over.Waited {
		t.Fatalf("after Admit: %+v, waited %v", cs[0], over.Waited)
	}
	granted := make(chan Ticket, 1)
	go func() {
		tk, err := a.Acquire(context.Background(), 0, LaneNormal)
		if err != nil {
			t.Error(err)
		}
		granted <- tk
	}()
	waitQueued(t, a, 0, 1)
	over.Done(Result{End: time.Now()})
	if _, cs := a.Snapshot(); cs[0].Inflight != 1 || cs[0].Queued != 1 {
		t.Fatalf("the over-cap slot freed below the cap's room: %+v", cs[0])
	}
	first.Done(Result{End: time.Now()})
	var tk Ticket
	select {
	case tk = <-granted:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter was not admitted when the class fell below its cap")
	}
	if !tk.Waited {
		t.Fatal("the waiter did not wait")
	}
	tk.Done(Result{End: time.Now()})
	if g, cs := a.Snapshot(); g != 0 || cs[0].Inflight != 0 || cs[0].Queued != 0 {
		t.Fatalf("after all Done: global %d, %+v", g, cs[0])
	}
}
