package scenario

import (
	"fmt"
	"slices"
)

// PeerNames lists the peers NewPeer knows, in report order.
var PeerNames = []string{"direct", "mxgate-inprocess", "caddy", "mxgate", "nginx", "haproxy"}

// PeerOptions configure the peers NewPeer builds.
type PeerOptions struct {
	// Scale is the run's time scale (in-process mxgate scales its config).
	Scale float64
	// MxgateBinary is the mxgate binary for the caddy and mxgate peers;
	// empty builds ./cmd/mxgate into a temporary directory.
	MxgateBinary string
}

// NewPeer returns the peer called name.
func NewPeer(name string, o PeerOptions) (Peer, error) {
	switch name {
	case "direct":
		return Direct{}, nil
	case "mxgate-inprocess":
		return &InProcess{Scale: o.Scale}, nil
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
