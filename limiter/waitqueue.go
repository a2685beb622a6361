package limiter

import "time"

// waiter is one request waiting for an admission slot. Its fields are guarded
// by Admission.mu; ready is closed exactly once, when the slot is granted or
// the waiter is displaced from the queue.
type waiter struct {
	ready      chan struct{}
	granted    bool
	displaced  error  // why it was taken out of the queue unserved; nil if not
	ticket     Ticket // set when granted
	lane       Lane
	group      uint64 // what Relane moves it by; 0: none
	enqueued   time.Time
	prev, next *waiter
}

// waitList is an intrusive doubly linked FIFO, so that a waiter whose client
// went away leaves in O(1) without scanning.
type waitList struct {
	head, tail *waiter
	len        int
}

func (l *waitList) pushBack(w *waiter) {
	w.prev, w.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
	l.len++
}

func (l *waitList) pushFront(w *waiter) {
	w.prev, w.next = nil, l.head
	if l.head != nil {
		l.head.prev = w
	} else {
		l.tail = w
	}
	l.head = w
	l.len++
}

func (l *waitList) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next = nil, nil
	l.len--
}

// classQueue holds a class's waiters in two lanes: LaneHerd waits behind
// LaneNormal, so one room's thundering herd cannot starve the rest of its
// class.
type classQueue struct {
	lanes [numLanes]waitList
	// standingSince is when the queue last went from empty to non-empty. A
	// queue that has not drained for longer than the LIFO threshold serves
	// newest first ("adaptive LIFO", Facebook's Fail at Scale): the oldest
	// waiters' clients have most likely given up already.
	standingSince time.Time
	// turn counts grants while standing; every fifoEvery-th grant goes to the
	// oldest waiter so that nobody waits only because newer requests arrive.
	turn int
}

// fifoEvery is how often a standing (LIFO) queue still serves its oldest
// waiter.
const fifoEvery = 4

func (q *classQueue) len() int {
	n := 0
	for i := range q.lanes {
		n += q.lanes[i].len
	}
	return n
}

func (q *classQueue) push(w *waiter, now time.Time) {
	if q.len() == 0 {
		q.standingSince = now
		q.turn = 0
	}
	q.lanes[w.lane].pushBack(w)
}

func (q *classQueue) remove(w *waiter) {
	q.lanes[w.lane].remove(w)
}

// pop removes the waiter to serve next, or returns nil if none wait.
func (q *classQueue) pop(now time.Time, lifoAfter time.Duration) *waiter {
	for i := range q.lanes {
		l := &q.lanes[i]
		if l.len == 0 {
			continue
		}
		w := l.head
		if lifoAfter > 0 && now.Sub(q.standingSince) > lifoAfter {
			q.turn++
			if q.turn%fifoEvery != 0 {
				w = l.tail
			}
		}
		l.remove(w)
		return w
	}
	return nil
}
