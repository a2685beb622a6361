package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// herdBuckets is how many buckets a herd window is cut into: the count
// covers the last herdBuckets+1 buckets, i.e. between the window and a
// quarter more, like the local detector's sliding window but in bounded
// Redis memory (one HyperLogLog, at most 12 KiB, per bucket).
const herdBuckets = 4

// DistinctUsers adds user to the fleet-wide count of (class, room) at now
// and returns how many distinct users requested that key on any gateway in
// the window ending at now. ok is false when Redis could not answer (the
// caller keeps its local count). Room IDs are hashed in the key, which keeps
// keys short whatever the room ID; users are added as their 64-bit hash.
// Anonymous requests (user 0) are not counted.
func (f *Fleet) DistinctUsers(class matrix.Class, room string, user matrix.TokenID, window time.Duration, now time.Time) (users int, ok bool) {
	if user == 0 || room == "" || window <= 0 {
		return 0, false
	}
	c := f.c
	if !c.up.Load() {
		c.skip(OpHerd)
		return 0, false
	}
	width := max(window/herdBuckets, time.Millisecond)
	bucket := now.UnixNano() / int64(width)
	sum := sha256.Sum256([]byte(room))
	base := c.key("herd", class.String(), hex.EncodeToString(sum[:8]))
	keys := make([]string, herdBuckets+1)
	for i := range keys {
		keys[i] = base + ":" + strconv.FormatInt(bucket-int64(i), 10)
	}
	var n int64
	err := c.call(OpHerd, func(ctx context.Context) error {
		pipe := c.rdb.Pipeline()
		pipe.PFAdd(ctx, keys[0], strconv.FormatUint(uint64(user), 16))
		pipe.PExpire(ctx, keys[0], window+2*width)
		count := pipe.PFCount(ctx, keys...)
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		n = count.Val()
		return nil
	})
	if err != nil {
		return 0, false
	}
	return int(n), true
}
