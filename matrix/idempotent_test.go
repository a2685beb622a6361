package matrix

import "testing"

func TestIdempotentRequests(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         bool
	}{
		{"GET", "/_matrix/client/v3/sync", true},
		{"HEAD", "/_matrix/media/v3/download/x/y", true},
		{"OPTIONS", "/_matrix/client/v3/login", true},
		{"PUT", "/_matrix/client/v3/rooms/%21r%3Ax/send/m.room.message/txn1", true},
		{"PUT", "/_matrix/client/v3/sendToDevice/m.room.encrypted/txn1", true},
		{"PUT", "/_matrix/client/v3/rooms/%21r%3Ax/redact/%24ev/txn1", true},
		{"PUT", "/_matrix/client/v3/rooms/%21r%3Ax/state/m.room.name/", true},
		{"PUT", "/_matrix/client/v3/rooms/%21r%3Ax/send/m.room.message", false},
		{"PUT", "/_matrix/client/v3/rooms/%21r%3Ax/send//txn1", false},
		{"PUT", "/_matrix/client/v3/rooms/%21r%3Ax/send/m.room.message/", false},
		{"PUT", "/_matrix/client/v3/profile/%40u%3Ax/displayname", false},
		{"POST", "/_matrix/client/v3/createRoom", false},
		{"POST", "/_matrix/client/v3/rooms/%21r%3Ax/send/m.room.message/txn1", false},
		{"DELETE", "/_matrix/client/v3/devices/D", false},
	} {
		if got := Idempotent(tc.method, tc.path); got != tc.want {
			t.Errorf("Idempotent(%s %s) = %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
}
