package simhs

import (
	"math"
	"sync"
	"time"
)

// cpu is a processor-sharing CPU: every job in it progresses at
// min(1, capacity/jobs) seconds of work per second, so each request's CPU
// phase stretches as more requests compete. It is event driven (one timer for
// the next completion), not a busy loop, and burns no real CPU.
type cpu struct {
	capacity func() float64 // cores available now, after contention

	mu    sync.Mutex
	jobs  map[*cpuJob]struct{} // at most one per open connection
	last  time.Time
	timer *time.Timer
}

type cpuJob struct {
	remaining float64 // seconds of wall-clock work left at full speed
	done      chan struct{}
}

func newCPU(capacity func() float64) *cpu {
	c := &cpu{capacity: capacity, jobs: make(map[*cpuJob]struct{}), last: time.Now()}
	c.timer = time.AfterFunc(time.Hour, c.tick)
	c.timer.Stop()
	return c
}

// run blocks until work (wall-clock time at full speed) has been done on the
// shared CPU, or until stop is closed.
func (c *cpu) run(work time.Duration, stop <-chan struct{}) {
	if work <= 0 {
		return
	}
	j := &cpuJob{remaining: work.Seconds(), done: make(chan struct{})}
	c.mu.Lock()
	c.advance(time.Now())
	c.jobs[j] = struct{}{}
	c.reschedule()
	c.mu.Unlock()
	select {
	case <-j.done:
	case <-stop:
		c.mu.Lock()
		c.advance(time.Now())
		delete(c.jobs, j)
		c.reschedule()
		c.mu.Unlock()
	}
}

func (c *cpu) tick() {
	c.mu.Lock()
	c.advance(time.Now())
	c.reschedule()
	c.mu.Unlock()
}

// rate is each job's speed with n jobs sharing the CPU.
func (c *cpu) rate(n int) float64 {
	if n == 0 {
		return 1
	}
	return math.Min(1, c.capacity()/float64(n))
}

// advance charges the time since the last event to every job and finishes
// those that are done. Callers hold mu.
func (c *cpu) advance(now time.Time) {
	dt := now.Sub(c.last).Seconds()
	c.last = now
	if len(c.jobs) == 0 || dt <= 0 {
		return
	}
	step := dt * c.rate(len(c.jobs))
	for j := range c.jobs {
		j.remaining -= step
		if j.remaining <= 1e-9 {
			close(j.done)
			delete(c.jobs, j)
		}
	}
}

// reschedule arms the timer for the next job to finish. Callers hold mu.
func (c *cpu) reschedule() {
	if len(c.jobs) == 0 {
		c.timer.Stop()
		return
	}
	next := math.Inf(1)
	for j := range c.jobs {
		next = math.Min(next, j.remaining)
	}
	wait := time.Duration(next / c.rate(len(c.jobs)) * float64(time.Second))
	c.timer.Reset(max(wait, 50*time.Microsecond))
}

// close stops the timer; jobs still waiting are released by their stop channel.
func (c *cpu) close() {
	c.mu.Lock()
	c.timer.Stop()
	c.mu.Unlock()
}
