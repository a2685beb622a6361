package fleet

import (
	"context"
	"strconv"
	"strings"

	"github.com/mxgate/mxgate/matrix"
)

// TokenVerdict is what one gateway learnt of a token from the homeserver,
// shared with the rest of the fleet: that it was accepted on a Host (Host
// is that Host's hash); with Forget, that it is to be forgotten until its
// next 2xx (a 401, which an interactive-auth step also answers); with
// Ended, that its session ended (a logout): it is never accepted again.
// Without them, a client whose token one gateway accepted is a stranger to
// the others, and a herd spread over N gateways counts about 1/N of its
// users on each.
type TokenVerdict struct {
	Token  matrix.TokenID
	Host   uint64
	Forget bool
	Ended  bool
}

// maxVerdictBacklog bounds the verdicts waiting to be published; past it
// they are dropped (and counted): a gateway that missed a verdict learns it
// from the homeserver's next answer, as it would without a fleet.
const maxVerdictBacklog = 4096

// maxVerdictsPerMessage bounds one published message (~40 bytes each).
const maxVerdictsPerMessage = 256

// ShareVerdicts makes the fleet share token verdicts: PublishVerdict
// announces this gateway's, and apply receives the others' (from the
// background loop, one at a time; it must not publish). Call it once,
// before Start.
func (f *Fleet) ShareVerdicts(apply func(TokenVerdict)) {
	f.applyVerdict = apply
	f.verdicts = make(chan TokenVerdict, maxVerdictBacklog)
}

// PublishVerdict announces v to the other gateways, in the background:
// it never waits for Redis.
func (f *Fleet) PublishVerdict(v TokenVerdict) {
	if f.verdicts == nil || v.Token == 0 {
		return
	}
	select {
	case f.verdicts <- v:
	default:
		f.c.skip(OpVerdict)
	}
}

// publishVerdicts publishes first and whatever else waits, up to
// maxVerdictsPerMessage, as one message. A failed publish is counted but,
// unlike a request's call, does not take the fleet for away: the heartbeat
// judges that, and verdicts are best effort.
func (f *Fleet) publishVerdicts(first TokenVerdict) {
	var b strings.Builder
	b.WriteString("s ")
	b.WriteString(f.cfg.Name)
	b.WriteByte('\n')
	appendVerdict(&b, first)
	for n := 1; n < maxVerdictsPerMessage; n++ {
		select {
		case v := <-f.verdicts:
			appendVerdict(&b, v)
			continue
		default:
		}
		break
	}
	if !f.c.up.Load() {
		f.c.skip(OpVerdict)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.c.timeout)
	defer cancel()
	if err := f.c.rdb.Publish(ctx, f.c.key("tokens"), b.String()).Err(); err != nil {
		f.c.skip(OpVerdict)
	}
}

// A message names its sender ("s NAME"), then holds one verdict per line:
// "a TOKEN HOST" (accepted), "f TOKEN" (forget) or "e TOKEN" (ended), the
// numbers in hex.
func appendVerdict(b *strings.Builder, v TokenVerdict) {
	switch {
	case v.Ended:
		b.WriteString("e ")
		b.WriteString(strconv.FormatUint(uint64(v.Token), 16))
	case v.Forget:
		b.WriteString("f ")
		b.WriteString(strconv.FormatUint(uint64(v.Token), 16))
	default:
		b.WriteString("a ")
		b.WriteString(strconv.FormatUint(uint64(v.Token), 16))
		b.WriteByte(' ')
		b.WriteString(strconv.FormatUint(v.Host, 16))
	}
	b.WriteByte('\n')
}

// parseVerdicts reads the verdicts of a message not sent by self (a
// gateway's own verdicts come back to it, possibly after it learnt better),
// skipping any line that is not one (a newer or broken sender's).
func parseVerdicts(msg, self string, fn func(TokenVerdict)) {
	if sender, _, _ := strings.Cut(msg, "\n"); sender == "s "+self {
		return
	}
	for line := range strings.SplitSeq(msg, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		tok, err := strconv.ParseUint(fields[1], 16, 64)
		if err != nil || tok == 0 {
			continue
		}
		switch {
		case fields[0] == "f" && len(fields) == 2:
			fn(TokenVerdict{Token: matrix.TokenID(tok), Forget: true})
		case fields[0] == "e" && len(fields) == 2:
			fn(TokenVerdict{Token: matrix.TokenID(tok), Ended: true})
		case fields[0] == "a" && len(fields) == 3:
			if host, err := strconv.ParseUint(fields[2], 16, 64); err == nil {
				fn(TokenVerdict{Token: matrix.TokenID(tok), Host: host})
			}
		}
	}
}
