package fleet

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/limiter"
)

// gcraScript is the generic cell rate algorithm in one round trip. KEYS[1]
// holds the bucket's theoretical arrival time (TAT, unix µs). ARGV: now
// (µs), emission interval (µs per token), burst. A request is allowed when
// TAT + emission − burst·emission <= now, which lets a fresh bucket take
// burst requests at once and then one per emission interval. It returns 0
// when allowed (and stores the new TAT, expiring when the bucket is full
// again), else the µs until a token is available.
var gcraScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local emission = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + emission - emission * burst
if allow_at > now then return math.ceil(allow_at - now) end
local new_tat = tat + emission
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
`)

// Rates is a limiter.RateStore shared by the fleet: one GCRA bucket per
// (class, hashed identity) in Redis, so a user's requests spread over the
// gateways are held to the configured rate once, not once per gateway. The
// key holds the 64-bit identity hash the gate computed (limiter.RateKey),
// never a credential. While Redis is unreachable each gateway uses its local
// store at rate ÷ N and burst ÷ N (rounded up), N the live gateways last
// seen, which keeps the fleet's total near the configured rate.
type Rates struct {
	c       *client
	members *members
	local   limiter.RateStore
}

// Allow implements limiter.RateStore.
func (r *Rates) Allow(key limiter.RateKey, limit float64, burst int, now time.Time) (bool, time.Duration) {
	if limit <= 0 {
		return true, 0
	}
	burst = max(burst, 1)
	if r.c.up.Load() {
		var wait int64
		err := r.c.call(OpRate, func(ctx context.Context) error {
			var err error
			wait, err = gcraScript.Run(ctx, r.c.rdb,
				[]string{r.c.key("rate", strconv.Itoa(int(key.Class)), strconv.FormatUint(key.ID, 16))},
				now.UnixMicro(), math.Max(1e6/limit, 1), burst).Int64()
			return err
		})
		if err == nil {
			return wait == 0, time.Duration(wait) * time.Microsecond
		}
	} else {
		r.c.skip(OpRate)
	}
	n := r.members.count()
	return r.local.Allow(key, limit/float64(n), (burst+n-1)/n, now)
}

var _ limiter.RateStore = (*Rates)(nil)
