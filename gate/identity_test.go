package gate

import (
	"strconv"
	"testing"

	"github.com/mxgate/mxgate/matrix"
)

func TestAcceptedTokensForgetTheLeastRecentlySeenGeneration(t *testing.T) {
	a := newAcceptedTokens()
	if a.has(0) {
		t.Fatal("the zero ID (no token) counts as accepted")
	}
	a.record(0)
	if n := len(a.cur) + len(a.prev); n != 0 {
		t.Fatalf("recording no token holds %d IDs", n)
	}

	const gen = acceptedTokensMax / 2
	kept, forgotten := matrix.TokenIDOf("kept"), matrix.TokenIDOf("forgotten")
	a.record(kept)
	a.record(forgotten)
	for i := range 3 * gen {
		a.record(matrix.TokenIDOf("token-" + strconv.Itoa(i)))
		if i%(gen/4) == 0 {
			a.record(kept) // seen again in every generation
		}
		if n := len(a.cur) + len(a.prev); n > acceptedTokensMax {
			t.Fatalf("after %d tokens the set holds %d IDs, over its bound of %d", i+3, n, acceptedTokensMax)
		}
	}
	if !a.has(kept) {
		t.Error("a token seen in every generation was forgotten")
	}
	if a.has(forgotten) {
		t.Error("a token not seen for three generations is still held")
	}
	if n := len(a.cur) + len(a.prev); n < gen {
		t.Errorf("the set holds only %d IDs; a full generation is %d", n, gen)
	}
}
