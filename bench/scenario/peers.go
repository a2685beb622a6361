package scenario

import (
	"encoding/json"
	"fmt"
	"slices"
)

// PeerNames lists the peers NewPeer knows, in report order.
var PeerNames = []string{"direct", "mxgate-inprocess", "caddy", "mxgate", "nginx", "haproxy", peerFleet, peerIslands}

// PeerOptions configure the peers NewPeer builds.
type PeerOptions struct {
	// Scale is the run's time scale (in-process mxgate scales its config).
	Scale float64
	// MxgateBinary is the mxgate binary for the caddy and mxgate peers;
	// empty builds ./cmd/mxgate into a temporary directory.
	MxgateBinary string
	// Classes overrides mxgate-inprocess's class settings: class name to a
	// JSON object of settings, as in mxgate's JSON config
	// (`{"room_state":{"max_inflight":2}}`).
	Classes map[string]json.RawMessage
}

// NewPeer returns the peer called name.
func NewPeer(name string, o PeerOptions) (Peer, error) {
	switch name {
	case "direct":
		return Direct{}, nil
	case "mxgate-inprocess":
		return &InProcess{Scale: o.Scale, Classes: o.Classes}, nil
	case peerFleet, peerIslands: // fleet.go
		return newFleetPeer(name, o), nil
	}
	if !slices.Contains(PeerNames, name) {
		return nil, fmt.Errorf("unknown peer %q (known: %v)", name, PeerNames)
	}
	return newExternal(name, o), nil
}

// IsExternal reports whether p runs as a child process with real-time
// timeouts.
func IsExternal(p Peer) bool {
	_, ok := p.(*external)
	return ok
}
