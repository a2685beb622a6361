// Package matrix knows what the Matrix client-server, media and federation APIs
// look like from the outside: which endpoint class a request belongs to, which
// room it is about, whose access token it carries, and how a homeserver says
// "slow down" (M_LIMIT_EXCEEDED). It imports nothing from Caddy.
package matrix

import "fmt"

// Class is the cost class of a Matrix request. Every request gets exactly one.
type Class uint8

// The endpoint classes of docs/DESIGN.md. Their order is the index used in per-class
// arrays throughout mxgate; NumClasses is the array length. New classes are
// appended, so the index of an existing class never changes.
const (
	Other Class = iota
	SyncInitial
	Sync
	RoomState
	History
	Search
	Receipts
	Send
	Keys
	Media
	Auth
	Federation
	Ephemeral
	// Admin is the homeserver's admin API: the operator's tools mid-incident.
	Admin
	// Discovery is the cheap, mostly static answers a client needs to
	// (re)connect: versions, well-known, capabilities, push rules, filters,
	// login flows and OAuth metadata.
	Discovery

	NumClasses int = iota
)

var classNames = [NumClasses]string{
	Other:       "other",
	SyncInitial: "sync_initial",
	Sync:        "sync",
	RoomState:   "room_state",
	History:     "history",
	Search:      "search",
	Receipts:    "receipts",
	Send:        "send",
	Keys:        "keys",
	Media:       "media",
	Auth:        "auth",
	Federation:  "federation",
	Ephemeral:   "ephemeral",
	Admin:       "admin",
	Discovery:   "discovery",
}

// String returns the class name used in config, metrics and the admin API.
func (c Class) String() string {
	if int(c) < NumClasses {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// ParseClass returns the class with the given config name.
func ParseClass(name string) (Class, error) {
	for i, n := range classNames {
		if n == name {
			return Class(i), nil
		}
	}
	return 0, fmt.Errorf("unknown endpoint class %q (known: %v)", name, classNames)
}

// Classes lists every class in index order.
func Classes() []Class {
	cs := make([]Class, NumClasses)
	for i := range cs {
		cs[i] = Class(i)
	}
	return cs
}

// Priority says how readily a class is shed. Brownout sheds every class at or
// below a priority; Critical is never shed by brownout.
type Priority uint8

const (
	Critical Priority = iota
	Normal
	Sheddable
)

var priorityNames = [...]string{Critical: "critical", Normal: "normal", Sheddable: "sheddable"}

func (p Priority) String() string {
	if int(p) < len(priorityNames) {
		return priorityNames[p]
	}
	return fmt.Sprintf("priority(%d)", uint8(p))
}

// ParsePriority returns the priority with the given name.
func ParsePriority(name string) (Priority, error) {
	for i, n := range priorityNames {
		if n == name {
			return Priority(i), nil
		}
	}
	return 0, fmt.Errorf("unknown priority %q (known: critical, normal, sheddable)", name)
}
