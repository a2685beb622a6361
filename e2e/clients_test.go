package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
)

// maxRecordedBody caps what the recorder reads of one response; the largest
// body in the suite is the 5 MB media download.
const maxRecordedBody = 16 << 20

// exchange is one HTTP request/response pair as a client saw it.
type exchange struct {
	method string
	status int
	header http.Header
	body   []byte
}

// recorder is an http.RoundTripper that keeps every exchange and counts
// statuses, so a test can compare what two runs received and check that no
// 5xx ever reached a client.
type recorder struct {
	next http.RoundTripper

	mu       sync.Mutex
	keep     bool       // whether to keep exchanges (not just count them)
	log      []exchange // since the last take
	statuses map[int]int
}

func newRecorder(next http.RoundTripper, keep bool) *recorder {
	return &recorder{next: next, keep: keep, statuses: map[int]int{}}
}

// RoundTrip implements http.RoundTripper.
func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.statuses[resp.StatusCode]++
	keep := r.keep
	r.mu.Unlock()
	if !keep {
		return resp, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRecordedBody+1))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(body) > maxRecordedBody {
		return nil, fmt.Errorf("recorder: %s %s: body over %d bytes", req.Method, req.URL.EscapedPath(), maxRecordedBody)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	r.log = append(r.log, exchange{
		method: req.Method, status: resp.StatusCode,
		header: resp.Header.Clone(), body: body,
	})
	r.mu.Unlock()
	return resp, nil
}

// take returns the exchanges recorded since the previous take.
func (r *recorder) take() []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.log
	r.log = nil
	return out
}

// statusCounts returns a copy of how often each status was seen.
func (r *recorder) statusCounts() map[int]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int]int, len(r.statuses))
	for k, v := range r.statuses {
		out[k] = v
	}
	return out
}

// newTransport returns a loopback transport sized for a herd of clients and
// closes its idle connections when the test ends.
func newTransport(t *testing.T) *http.Transport {
	tr := &http.Transport{
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     30 * time.Second,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// newClient returns a mautrix client for baseURL whose HTTP goes through rt.
// Retries are off unless a test turns them on.
func newClient(t *testing.T, baseURL string, rt http.RoundTripper) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(baseURL, "", "")
	if err != nil {
		t.Fatalf("mautrix.NewClient(%s): %v", baseURL, err)
	}
	cli.Client = &http.Client{Transport: rt}
	cli.DefaultHTTPRetries = 0
	return cli
}

// register creates user localpart with password on cli's homeserver through
// the m.login.dummy flow, and makes cli that user.
func register(ctx context.Context, cli *mautrix.Client, localpart, password string) (*mautrix.RespRegister, error) {
	resp, err := cli.RegisterDummy(ctx, &mautrix.ReqRegister[any]{
		Username:                 localpart,
		Password:                 password,
		InitialDeviceDisplayName: "e2e",
	})
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", localpart, err)
	}
	cli.SetCredentials(resp.UserID, resp.AccessToken)
	cli.DeviceID = resp.DeviceID
	return resp, nil
}

// forEachBounded runs fn(i) for i in [0,n) with at most limit at a time and
// returns the first error.
func forEachBounded(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, limit)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			close(errs)
			if err := <-errs; err != nil {
				return err
			}
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// uniqueSuffix keeps user names distinct across tests sharing one Dendrite.
func uniqueSuffix() string { return fmt.Sprintf("%x", time.Now().UnixNano()) }
