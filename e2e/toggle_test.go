package e2e

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"maunium.net/go/mautrix"
)

// TestOperatorToggle sheds sync_initial through the admin API of the default
// gateway: an initial sync then gets M_LIMIT_EXCEEDED while incremental syncs
// keep working; restoring the class lets initial syncs through again.
func TestOperatorToggle(t *testing.T) {
	forEachHomeserver(t, testOperatorToggle)
}

func testOperatorToggle(t *testing.T, s *hsEnv) {
	checkGoroutineLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cli := newClient(t, s.gateway.url, newTransport(t))
	if _, err := register(ctx, cli, "toggle-"+uniqueSuffix(), "toggle-password"); err != nil {
		t.Fatal(err)
	}
	first, err := cli.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatalf("initial sync before shedding: %v", err)
	}

	shedURL := s.gateway.admin + "/mxgate/shed"
	status, body, err := adminDo(ctx, http.MethodPost, shedURL,
		map[string]string{"class": "sync_initial", "mode": "shed", "for": "1m", "reason": "e2e"})
	if err != nil {
		t.Fatalf("POST %s: %v", shedURL, err)
	}
	if status == http.StatusNotFound {
		t.Skipf("admin API POST /mxgate/shed not implemented yet (404: %s)", body)
	}
	if status/100 != 2 {
		t.Fatalf("POST /mxgate/shed: status %d: %s", status, body)
	}
	// Restore even if an assertion below fails, so other tests see a normal gateway.
	t.Cleanup(func() {
		_, _, _ = adminDo(context.Background(), http.MethodDelete, shedURL+"/sync_initial", nil)
	})

	// SyncRequest makes exactly one attempt, so the 429 surfaces as is.
	_, err = cli.SyncRequest(ctx, 0, "", "", false, "")
	if !errors.Is(err, mautrix.MLimitExceeded) {
		t.Fatalf("initial sync while shed: err = %v, want M_LIMIT_EXCEEDED", err)
	}
	// Both ways of telling the client when to come back must be there:
	// mautrix reads the header, Element's SDKs the body field.
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) || httpErr.Response == nil || httpErr.Response.StatusCode != http.StatusTooManyRequests ||
		httpErr.Response.Header.Get("Retry-After") == "" {
		t.Errorf("shed response is not a 429 with Retry-After: %v", err)
	} else if ms, ok := httpErr.RespError.ExtraData["retry_after_ms"].(float64); !ok || ms <= 0 {
		t.Errorf("shed response body lacks a positive retry_after_ms: %s", httpErr.ResponseBody)
	}
	if _, err := cli.SyncRequest(ctx, 0, first.NextBatch, "", false, ""); err != nil {
		t.Errorf("incremental sync while sync_initial is shed: %v", err)
	}

	status, body, err = adminDo(ctx, http.MethodDelete, shedURL+"/sync_initial", nil)
	if err != nil || status/100 != 2 {
		t.Fatalf("DELETE /mxgate/shed/sync_initial: status %d, err %v: %s", status, err, body)
	}
	if _, err := cli.SyncRequest(ctx, 0, "", "", false, ""); err != nil {
		t.Errorf("initial sync after restore: %v", err)
	}
}
