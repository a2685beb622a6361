package simhs

import (
	"bytes"
	"fmt"
)

// stateEvents returns a JSON array of member events of about size bytes: the
// shape of a large room's state, which is what makes resyncs expensive to
// serialise and to ship.
func stateEvents(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 256)
	b.WriteByte('[')
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"m.room.member","state_key":"@user%d:sim.test","sender":"@user%d:sim.test",`+
			`"event_id":"$ev%d","origin_server_ts":1700000000000,"content":{"membership":"join","displayname":"User %d"}}`,
			i, i, i, i)
	}
	b.WriteByte(']')
	return b.Bytes()
}
