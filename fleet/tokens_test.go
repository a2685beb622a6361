package fleet

import (
	"strings"
	"testing"

	"github.com/mxgate/mxgate/matrix"
)

func TestVerdictMessageRoundTrip(t *testing.T) {
	in := []TokenVerdict{{Token: 1, Host: 0xfeed}, {Token: matrix.TokenIDOf("x"), Forget: true}, {Token: 1 << 63, Host: 0},
		{Token: 7, Ended: true}}
	var b strings.Builder
	b.WriteString("s gw1\n")
	for _, v := range in {
		appendVerdict(&b, v)
	}
	var out []TokenVerdict
	parseVerdicts(b.String()+"junk line\na zz 1\nf 0\na 5\n", "gw0", func(v TokenVerdict) { out = append(out, v) })
	if len(out) != len(in) {
		t.Fatalf("parsed %+v, want %+v", out, in)
	}
	for i := range in {
		if out[i] != in[i] {
			t.Fatalf("verdict %d: %+v, want %+v", i, out[i], in[i])
		}
	}
	parseVerdicts(b.String(), "gw1", func(v TokenVerdict) { t.Fatalf("a gateway applied its own verdict %+v", v) })
}

// A message from Redis is another process's: whatever it holds, parsing
// neither panics nor yields a verdict for no token.
func FuzzParseVerdicts(f *testing.F) {
	f.Add("a 1f 2e\nf 3\n")
	f.Add("a\n\n f  \x00 ffffffffffffffffff 1")
	f.Fuzz(func(t *testing.T, msg string) {
		parseVerdicts(msg, "self", func(v TokenVerdict) {
			if v.Token == 0 {
				t.Fatalf("a verdict for no token from %q", msg)
			}
		})
	})
}
