package gate

import (
	"io"
	"net/http"
	"time"
)

// statusWriter records the status code the upstream answered with and,
// given a clock, when the answer began: the adaptive limit samples the
// upstream's time to first byte, not how long a slow client took to read a
// large body. It keeps the wrapped writer reachable through Unwrap, so
// http.ResponseController (which Caddy's reverse proxy uses to flush
// streaming answers) still works, and keeps its io.ReaderFrom fast path
// (net/http's response sends files with sendfile) for handlers that copy
// with io.Copy.
//
// With hold set, the final status is kept back (and a flush before the body
// is put off) until the body's first byte or commit: an upstream that
// breaks off its answer after the headers, as a restart may, has then sent
// the client nothing, and the request can be sent again (serve.go).
type statusWriter struct {
	http.ResponseWriter
	status   int
	hold     bool             // the status is not passed on yet
	flushed  bool             // a flush was put off while holding
	clock    func() time.Time // nil: headerAt is not recorded
	headerAt time.Time
	// timer, if set (upstreamtimeout.go), is disarmed by the answer's first
	// byte; it points at answer, held here so that it costs no allocation
	// of its own.
	timer  *answerTimer
	answer answerTimer
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status < 200 {
		s.status = code
	}
	if code < 200 {
		// An informational answer (100 Continue before the body, 103
		// Early Hints) is not the answer: its timeout still runs.
		s.ResponseWriter.WriteHeader(code)
		return
	}
	s.markHeader()
	if s.hold {
		return // passed on by commit
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status < 200 { // none yet, or only informational: net/http sends 200
		s.status = http.StatusOK
	}
	s.markHeader()
	if s.hold && len(b) == 0 {
		return 0, nil // not the body's first byte
	}
	s.commit()
	return s.ResponseWriter.Write(b)
}

// commit passes a held status on, and the flush put off with it; without a
// status (next wrote nothing yet) nothing is sent, so that the caller can
// still answer.
func (s *statusWriter) commit() {
	if !s.hold || s.status < 200 {
		return
	}
	s.hold = false
	s.ResponseWriter.WriteHeader(s.status)
	if s.flushed {
		_ = http.NewResponseController(s.ResponseWriter).Flush()
	}
}

func (s *statusWriter) markHeader() {
	if s.clock != nil && s.headerAt.IsZero() {
		s.headerAt = s.clock()
	}
	if s.timer != nil {
		s.timer.answer()
		s.timer = nil
	}
}

// ReadFrom copies src to the wrapped writer, through its own ReadFrom if it
// has one.
func (s *statusWriter) ReadFrom(src io.Reader) (int64, error) {
	if s.status < 200 {
		s.status = http.StatusOK
	}
	s.markHeader()
	s.commit()
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{s.ResponseWriter}, src)
}

// Flush passes flushes through for long-poll and streamed answers; while
// the status is held, it is put off until commit.
func (s *statusWriter) Flush() {
	if s.hold {
		s.flushed = true
		return
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap exposes the wrapped writer to http.ResponseController.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
