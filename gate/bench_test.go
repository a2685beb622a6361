package gate

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkServeNextUncontended is the whole pipeline for one request that
// nothing holds back: classify, toggles, admission, metrics. It is mxgate's
// per-request overhead before the proxy itself.
func BenchmarkServeNextUncontended(b *testing.B) {
	g, err := New(DefaultConfig(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	req := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/rooms/%21abc%3Aexample.org/messages?dir=b&limit=20", nil)
	req.Header.Set("Authorization", "Bearer syt_benchmark_token")
	w := httptest.NewRecorder()
	next := func(http.ResponseWriter, *http.Request) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := g.ServeNext(w, req, next); err != nil {
			b.Fatal(err)
		}
	}
}
