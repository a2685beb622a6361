package gate

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// readFromRecorder is a ResponseWriter with its own io.ReaderFrom, as
// net/http's response has (sendfile).
type readFromRecorder struct {
	*httptest.ResponseRecorder
	readFrom int
}

func (r *readFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	r.readFrom++
	return io.Copy(r.ResponseRecorder, src)
}

func TestStatusWriterKeepsReaderFromAndFlusher(t *testing.T) {
	rec := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
	sw := &statusWriter{ResponseWriter: rec}
	var w http.ResponseWriter = sw
	n, err := io.Copy(w, io.LimitReader(strings.NewReader("hello"), 100)) // no WriteTo: ReadFrom is the fast path
	if err != nil || n != 5 || rec.Body.String() != "hello" {
		t.Fatalf("io.Copy = %d, %v; body %q", n, err, rec.Body.String())
	}
	if rec.readFrom != 1 {
		t.Errorf("the wrapped writer's ReadFrom ran %d times, want 1 (io.Copy's fast path)", rec.readFrom)
	}
	if sw.status != http.StatusOK {
		t.Errorf("status %d after a copied body, want 200", sw.status)
	}
	if err := http.NewResponseController(w).Flush(); err != nil || !rec.Flushed {
		t.Errorf("flush through the wrapper: %v, flushed %v", err, rec.Flushed)
	}

	// Without a ReadFrom of its own, the copy still arrives.
	plain := httptest.NewRecorder()
	if _, err := io.Copy(&statusWriter{ResponseWriter: plain}, strings.NewReader("x")); err != nil || plain.Body.String() != "x" {
		t.Errorf("copy to a writer without ReadFrom: %v, %q", err, plain.Body.String())
	}
}
