package gate

import (
	"bytes"
	"net/http"
)

// bufferingWriter holds an answer in memory, up to max bytes, so that it can
// be inspected before anyone sees it. An answer that outgrows max is not
// lost: the buffered part and everything after it go to the client as they
// come (passedThrough).
type bufferingWriter struct {
	client        http.ResponseWriter
	header        http.Header
	status        int
	buf           bytes.Buffer
	max           int
	passedThrough bool
}

func (b *bufferingWriter) Header() http.Header { return b.header }

func (b *bufferingWriter) WriteHeader(code int) {
	if b.status == 0 && code >= 200 {
		b.status = code
	}
}

func (b *bufferingWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	if b.passedThrough {
		return b.client.Write(p)
	}
	if b.buf.Len()+len(p) <= b.max {
		return b.buf.Write(p)
	}
	b.flushToClient()
	b.passedThrough = true
	return b.client.Write(p)
}

// Flush passes flushes through once the answer streams; while buffering
// there is nothing to flush yet.
func (b *bufferingWriter) Flush() {
	if b.passedThrough {
		_ = http.NewResponseController(b.client).Flush()
	}
}

// flushToClient writes the status, headers and buffered body to the client.
func (b *bufferingWriter) flushToClient() {
	h := b.client.Header()
	for k, v := range b.header {
		h[k] = v
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	b.client.WriteHeader(b.status)
	_, _ = b.client.Write(b.buf.Bytes())
	b.buf.Reset()
}
