package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// calibrationSizes are the room sizes (members) the calibration measures.
var calibrationSizes = []int{10, 100, 300}

// calibrationSamples is how many times each request is measured per size.
const calibrationSamples = 15

// TestCalibrateSynapse measures what Synapse spends on a room's /state,
// /members, a member's initial /sync and a send, for rooms of
// calibrationSizes members, one request at a time against an otherwise idle
// server: wall time, Synapse's CPU time (from /proc) and the answer's size.
// bench/simhs's default costs come from these figures (bench/README.md). It
// is a measurement, not a check, so it only runs with
// MXGATE_E2E_CALIBRATE=1.
func TestCalibrateSynapse(t *testing.T) {
	if os.Getenv("MXGATE_E2E_CALIBRATE") != "1" {
		t.Skip("set MXGATE_E2E_CALIBRATE=1 to measure Synapse's request costs")
	}
	forEachHomeserver(t, func(t *testing.T, s *hsEnv) {
		if s.name != "synapse" {
			t.Skip("calibrates Synapse only")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		pid := s.hs.process().cmd.Process.Pid
		t.Logf("| members | request | wall p50 | Synapse CPU / request | body |")
		t.Logf("|---|---|---|---|---|")
		for _, n := range calibrationSizes {
			users, room := setUpCalibrationRoom(t, ctx, s, n)
			member := users[len(users)-1]
			roomPath := "/_matrix/client/v3/rooms/" + url.PathEscape(room.String())
			seq := 0
			for _, m := range []struct {
				name, method, path string
			}{
				{"/state", http.MethodGet, roomPath + "/state"},
				{"/members", http.MethodGet, roomPath + "/members"},
				{"initial /sync", http.MethodGet, "/_matrix/client/v3/sync"},
				{"send", http.MethodPut, roomPath + "/send/m.room.message/"},
			} {
				var walls []time.Duration
				var body int
				cpuBefore := processCPU(t, pid)
				for range calibrationSamples {
					path := m.path
					var payload io.Reader
					switch {
					case m.name == "initial /sync":
						// Synapse keeps a finished /sync answer for a while
						// for an identical request; a filter that differs
						// each time (and excludes nothing real) defeats that.
						seq++
						path += "?filter=" + url.QueryEscape(fmt.Sprintf(`{"room":{"timeline":{"not_types":["org.mxgate.calibrate.%d"]}}}`, seq))
					case m.method == http.MethodPut:
						seq++
						path += fmt.Sprintf("calibrate-%d", seq)
						payload = strings.NewReader(`{"msgtype":"m.text","body":"calibration"}`)
					}
					req, _ := http.NewRequestWithContext(ctx, m.method, s.hs.url()+path, payload)
					req.Header.Set("Authorization", "Bearer "+member.AccessToken)
					began := time.Now()
					resp, err := oneShotClient.Do(req)
					if err != nil {
						t.Fatalf("%s: %v", m.name, err)
					}
					data, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					walls = append(walls, time.Since(began))
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("%s: status %d: %s", m.name, resp.StatusCode, abbreviate(data))
					}
					body = len(data)
				}
				cpu := (processCPU(t, pid) - cpuBefore) / calibrationSamples
				sort.Slice(walls, func(i, j int) bool { return walls[i] < walls[j] })
				t.Logf("| %d | %s | %v | %v | %d KiB |", n, m.name, walls[len(walls)/2].Round(100*time.Microsecond),
					cpu.Round(100*time.Microsecond), (body+512)/1024)
			}
		}
	})
}

// setUpCalibrationRoom registers n users and has them all join a new room.
func setUpCalibrationRoom(t *testing.T, ctx context.Context, s *hsEnv, n int) ([]*mautrix.Client, id.RoomID) {
	t.Helper()
	rt := newTransport(t)
	suffix := uniqueSuffix()
	users := make([]*mautrix.Client, n)
	for i := range users {
		users[i] = newClient(t, s.hs.url(), rt)
	}
	if err := forEachBounded(ctx, n, 4, func(ctx context.Context, i int) error {
		_, err := register(ctx, users[i], fmt.Sprintf("cal-%s-%03d", suffix, i), "calibrate-password")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	created, err := users[0].CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if err := forEachBounded(ctx, n-1, 4, func(ctx context.Context, i int) error {
		_, err := users[i+1].JoinRoomByID(ctx, created.RoomID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return users, created.RoomID
}

// processCPU returns the user+system CPU time pid has used so far.
func processCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("reading Synapse's CPU time: %v", err)
	}
	// Fields after the ")" that ends the command name: utime and stime are
	// the 12th and 13th (fields 14 and 15 of the whole line).
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("parsing /proc/%d/stat", pid)
	}
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks
}
