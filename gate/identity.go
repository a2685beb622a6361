package gate

import (
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/mxgate/mxgate/matrix"
)

// acceptedTokensMax bounds the set of accepted tokens; an evicted token
// counts again after its next successful answer.
const acceptedTokensMax = 100_000

// acceptedTokens are the tokens the homeserver has answered with a 2xx:
// the only identities herd detection counts and share_state verifies, so
// made-up tokens can neither declare a herd nor cost the homeserver a
// whoami. Only hashed IDs are held.
type acceptedTokens struct {
	ids *lru.Cache[matrix.TokenID, struct{}]
}

func newAcceptedTokens() acceptedTokens {
	ids, _ := lru.New[matrix.TokenID, struct{}](acceptedTokensMax)
	return acceptedTokens{ids: ids}
}

// record notes that the homeserver accepted id (zero: no token, ignored).
// The read-locked Contains first keeps the common case, a token already
// known, off the cache's write lock.
func (a acceptedTokens) record(id matrix.TokenID) {
	if id != 0 && !a.ids.Contains(id) {
		a.ids.Add(id, struct{}{})
	}
}

// has reports whether id was accepted (zero never is).
func (a acceptedTokens) has(id matrix.TokenID) bool {
	return id != 0 && a.ids.Contains(id)
}
