package fleet

import (
	"testing"
	"time"

	"github.com/mxgate/mxgate/fleet/redistest"
	"github.com/mxgate/mxgate/matrix"
)

// 20 users on each of three gateways are 60 on the room, for every
// gateway; the count forgets users after the window.
func TestDistinctUsersAcrossGateways(t *testing.T) {
	srv := redistest.Start(t)
	fs := testFleets(t, srv, 3, t0)
	const room = "!big:example.org"
	window := 10 * time.Second
	var last [3]int
	for u := range 60 {
		f := u % 3
		n, ok := fs[f].DistinctUsers(matrix.RoomState, room, matrix.IDOf("token"+string(rune('A'+u))), window, t0)
		if !ok {
			t.Fatal("Redis did not answer")
		}
		last[f] = n
	}
	for i, n := range last {
		if n < 58 || n > 62 { // HyperLogLog is exact-ish at this size
			t.Errorf("gateway %d counted %d distinct users, want about 60", i, n)
		}
	}
	// A repeat user adds nothing; another class or room is separate.
	if n, _ := fs[0].DistinctUsers(matrix.RoomState, room, matrix.IDOf("tokenA"), window, t0); n < 58 || n > 62 {
		t.Errorf("a repeat changed the count to %d", n)
	}
	if n, _ := fs[0].DistinctUsers(matrix.History, room, matrix.IDOf("tokenA"), window, t0); n != 1 {
		t.Errorf("another class counted %d", n)
	}
	// Two windows later only the newcomer is in the window.
	if n, _ := fs[1].DistinctUsers(matrix.RoomState, room, matrix.IDOf("late"), window, t0.Add(2*window)); n != 1 {
		t.Errorf("after two windows the count is %d, want 1", n)
	}
	// Keys expire: none outlives a couple of windows.
	keys, _ := fs[0].c.rdb.Keys(t.Context(), fs[0].c.key("herd")+"*").Result()
	for _, k := range keys {
		if d := fs[0].c.rdb.PTTL(t.Context(), k).Val(); d <= 0 || d > 2*window {
			t.Errorf("herd key %s has TTL %v, want a bounded one", k, d)
		}
	}
	// Anonymous requests and Redis being gone give no fleet count.
	if _, ok := fs[0].DistinctUsers(matrix.RoomState, room, 0, window, t0); ok {
		t.Error("an anonymous request was counted")
	}
	srv.Kill()
	if _, ok := fs[0].DistinctUsers(matrix.RoomState, room, 5, window, t0); ok {
		t.Error("a count came back without Redis")
	}
}
