package gate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkServeNextUncontended is the whole pipeline for one request that
// nothing holds back: classify, toggles, herd detection, coalescing where the
// class has it, admission, metrics. It is mxgate's per-request cost before
// the proxy itself (the recorder's allocations included). Each request has
// a cancellable context of its own, as net/http's server gives it.
func BenchmarkServeNextUncontended(b *testing.B) {
	for _, bc := range []struct{ name, method, target string }{
		// profile: class other, no room, no coalescing: the overhead
		// bench's cheap endpoint.
		{"profile", http.MethodGet, "/_matrix/client/v3/profile/@u:x"},
		// send: no coalescing, no rate; herd detection on the room.
		{"send", http.MethodPut, "/_matrix/client/v3/rooms/%21abc%3Aexample.org/send/m.room.message/txn1"},
		// history: coalesced; Synapse's answers are no-store, so every
		// request leads its own group through admission.
		{"history", http.MethodGet, "/_matrix/client/v3/rooms/%21abc%3Aexample.org/messages?dir=b&limit=20"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			g, err := New(DefaultConfig(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer g.Close()
			req := httptest.NewRequest(bc.method, bc.target, nil)
			req.Header.Set("Authorization", "Bearer syt_benchmark_token")
			next := func(w http.ResponseWriter, _ *http.Request) error {
				w.Header().Set("Cache-Control", "no-store")
				return nil
			}
			b.ReportAllocs()
			for b.Loop() {
				ctx, cancel := context.WithCancel(context.Background())
				if err := g.ServeNext(httptest.NewRecorder(), req.WithContext(ctx), next); err != nil {
					b.Fatal(err)
				}
				cancel()
			}
		})
	}
}
