package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/caddymodule"
	"github.com/mxgate/mxgate/gate"
)

const defaultAdmin = "localhost:2019"

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "status",
		Usage: "[--admin <addr>] [--json] [--interval <d>] [--zone <name>]",
		Short: "Shows mxgate's classes, toggles, herds and upstream health",
		Long: `
Prints, for each endpoint class: its mode (normal, queue, shed), requests in
flight against the cap in force, requests queued, 429s per second (shed,
rate-limited and queue timeouts, measured over --interval; 0 prints totals
only) and totals; then active operator toggles, thundering herds, upstream
health and the client connection cap. --json prints the admin API's raw
GET /mxgate/status answer instead.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("admin", defaultAdmin, "address of the admin endpoint")
			cmd.Flags().Bool("json", false, "print the raw JSON status")
			cmd.Flags().String("interval", "1s", "sampling interval for 429s per second (0 = totals only)")
			cmd.Flags().String("zone", "", "only this mxgate zone")
			cmd.Args = cobra.NoArgs
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
				interval, err := caddy.ParseDuration(fl.String("interval"))
				if err != nil || interval < 0 {
					return caddy.ExitCodeFailedStartup, fmt.Errorf("--interval: want a duration such as 1s, got %q", fl.String("interval"))
				}
				return exitCode(runStatus(os.Stdout, fl.String("admin"), fl.String("zone"), fl.Bool("json"), interval))
			})
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "shed",
		Usage: "<class> | --priority sheddable|normal  [--for <d>] [--reason <text>] [--mode shed|queue] [--zone <name>] [--admin <addr>]",
		Short: "Sheds (or holds) a class of traffic now, for a limited time",
		Long: `
Sheds every request of CLASS with a 429 (--mode queue holds them in their
queues instead) until --for has passed (default 15m) or mxgate restore ends
it. --priority sheddable sheds every sheddable class, --priority normal every
normal and sheddable class (a brownout); critical classes are never shed by
a brownout. --reason is shown to shed clients and in mxgate status. The
toggle survives config reloads and restarts until it expires.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("admin", defaultAdmin, "address of the admin endpoint")
			cmd.Flags().String("for", gate.DefaultToggleDuration.String(), "how long the toggle lasts")
			cmd.Flags().String("reason", "", "why (shown to shed clients)")
			cmd.Flags().String("mode", "shed", "shed (429 at once) or queue (hold in the queue)")
			cmd.Flags().String("priority", "", "brownout: shed every class at or below this priority")
			cmd.Flags().String("zone", "", "only this mxgate zone (default all)")
			cmd.Args = cobra.MaximumNArgs(1)
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
				return exitCode(runShed(os.Stdout, fl.String("admin"), caddymodule.ShedRequest{
					Class: fl.Arg(0), Priority: fl.String("priority"), Mode: fl.String("mode"),
					For: fl.String("for"), Reason: fl.String("reason"), Zone: fl.String("zone"),
				}))
			})
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "restore",
		Usage: "<class> | --priority sheddable|normal | --all  [--zone <name>] [--admin <addr>]",
		Short: "Ends an operator toggle: the class is back to its configured behaviour",
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("admin", defaultAdmin, "address of the admin endpoint")
			cmd.Flags().Bool("all", false, "end every toggle")
			cmd.Flags().String("priority", "", "end the brownout at this priority")
			cmd.Flags().String("zone", "", "only this mxgate zone (default all)")
			cmd.Args = cobra.MaximumNArgs(1)
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
				return exitCode(runRestore(os.Stdout, fl.String("admin"), fl.Arg(0), fl.String("priority"), fl.String("zone"), fl.Bool("all")))
			})
		},
	})
}

func exitCode(err error) (int, error) {
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return caddy.ExitCodeSuccess, nil
}

// adminClient talks to Caddy's admin endpoint.
type adminClient struct {
	addr string
	base string
	http *http.Client
}

// adminTimeout bounds every admin request: a wedged gateway must not hang
// the operator's terminal.
const adminTimeout = 10 * time.Second

func newAdminClient(addr string) (*adminClient, error) {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil || na.PortRangeSize() > 1 {
		return nil, fmt.Errorf("--admin: want host:port or unix//path, got %q", addr)
	}
	base := "http://" + na.JoinHostPort(0)
	if na.IsUnixNetwork() {
		base = "http://127.0.0.1" // the admin endpoint wants a loopback Host on sockets
	}
	dialer := net.Dialer{Timeout: adminTimeout}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, na.Network, na.JoinHostPort(0))
	}}
	return &adminClient{addr: addr, base: base, http: &http.Client{Transport: tr, Timeout: adminTimeout}}, nil
}

// call sends body (if any) as JSON and decodes the answer into out. An
// error answer becomes an error with the API's message.
func (c *adminClient) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach mxgate admin endpoint at %s: is the gateway running? (%v)", c.addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", c.addr, err)
	}
	if resp.StatusCode == http.StatusNotFound && !json.Valid(b) {
		return fmt.Errorf("%s does not serve %s: is it an mxgate build of Caddy?", c.addr, path)
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("admin endpoint answered HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("unexpected answer from %s: %w", c.addr, err)
		}
	}
	return nil
}

func zoneQuery(zone string) string {
	if zone == "" {
		return ""
	}
	return "?zone=" + url.QueryEscape(zone)
}

// runStatus prints the status table (or raw JSON). With interval > 0 it
// samples twice, interval apart, to compute 429s per second.
func runStatus(w io.Writer, admin, zone string, asJSON bool, interval time.Duration) error {
	c, err := newAdminClient(admin)
	if err != nil {
		return err
	}
	path := "/mxgate/status" + zoneQuery(zone)
	if asJSON {
		var raw json.RawMessage
		if err := c.call(http.MethodGet, path, nil, &raw); err != nil {
			return err
		}
		_, err := fmt.Fprintln(w, strings.TrimSpace(string(raw)))
		return err
	}
	var first, second caddymodule.StatusResponse
	if err := c.call(http.MethodGet, path, nil, &first); err != nil {
		return err
	}
	t0 := time.Now()
	var prev *caddymodule.StatusResponse
	if interval > 0 {
		time.Sleep(interval)
		if err := c.call(http.MethodGet, path, nil, &second); err != nil {
			return err
		}
		prev, first = &first, second
	}
	return printStatus(w, &first, prev, time.Since(t0))
}

func printStatus(w io.Writer, st, prev *caddymodule.StatusResponse, elapsed time.Duration) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, z := range st.Zones {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "zone %s: global in-flight %d/%s, queued %d; upstream %s\n",
			z.Zone, z.Global.Inflight, capString(z.Global.MaxInflight), z.Global.Queued, upstreamLine(z.Upstream))
		fmt.Fprintln(tw, "CLASS\tPRIORITY\tMODE\tIN-FLIGHT/CAP\tQUEUED\t429/s\t429 TOTAL\tADMITTED")
		var before []gate.ClassStatus
		if prev != nil {
			for _, pz := range prev.Zones {
				if pz.Zone == z.Zone {
					before = pz.Classes
				}
			}
		}
		for j, cs := range z.Classes {
			rate := "-"
			if j < len(before) && before[j].Class == cs.Class && elapsed > 0 {
				d := float64(cs.Counters.Refused()-before[j].Counters.Refused()) / elapsed.Seconds()
				rate = fmt.Sprintf("%.1f", d)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%s\t%d\t%s\t%d\t%d\n", cs.Class, cs.Priority, cs.Mode,
				cs.Inflight, capString(cs.Cap), cs.Queued, rate, cs.Counters.Refused(), cs.Counters.Admitted)
		}
		fmt.Fprintln(tw)
		if len(z.Toggles) == 0 {
			fmt.Fprintln(tw, "toggles: none")
		} else {
			fmt.Fprintln(tw, "TOGGLE\tMODE\tUNTIL\tLEFT\tREASON")
			for _, t := range z.Toggles {
				target := t.Class
				if t.Class == "*" {
					target = "* (" + t.Priority + " and below)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", target, t.Mode, t.Until.Local().Format("2006-01-02 15:04:05"), t.Remaining, t.Reason)
			}
		}
		if len(z.Herds) == 0 {
			fmt.Fprintln(tw, "herds: none")
		} else {
			fmt.Fprintln(tw, "HERD CLASS\tROOM\tUSERS\tSINCE")
			for _, h := range z.Herds {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", h.Class, h.Room, h.Users, h.Since.Local().Format("15:04:05"))
			}
		}
		printFleet(tw, z.Fleet) // ctl_fleet.go
	}
	if cn := st.Connections; cn != nil {
		fmt.Fprintf(tw, "client connections: %d open, cap %d, peak %d (RLIMIT_NOFILE %d)\n", cn.Open, cn.Max, cn.Peak, cn.Budget.Limit)
	}
	return tw.Flush()
}

func capString(n int) string {
	if n == 0 {
		return "∞"
	}
	return fmt.Sprint(n)
}

func upstreamLine(h gate.UpstreamHealth) string {
	state := "no traffic in the last minute"
	if h.Reachable != nil {
		state = "unreachable"
		if *h.Reachable {
			state = "answering"
		}
	}
	if h.Responses == 0 {
		return state
	}
	return fmt.Sprintf("%s, %.1f%% failed of %d in the last minute", state, 100*h.ErrorRatio, h.Responses)
}

func runShed(w io.Writer, admin string, a caddymodule.ShedRequest) error {
	switch {
	case a.Class != "" && a.Priority != "":
		return errors.New("give a class or --priority, not both")
	case a.Class == "" && a.Priority == "":
		return errors.New("name a class to shed (mxgate status lists them), or --priority sheddable|normal for a brownout")
	case a.Class == "":
		a.Class = "*"
	}
	c, err := newAdminClient(admin)
	if err != nil {
		return err
	}
	var resp caddymodule.ShedResponse
	if err := c.call(http.MethodPost, "/mxgate/shed", a, &resp); err != nil {
		return err
	}
	t := resp.Toggle
	if t == nil { // mode normal: the toggle was ended
		return printRestored(w, resp)
	}
	what := t.Class
	if t.Class == "*" {
		what = "every " + t.Priority + " and lower-priority class"
	}
	fmt.Fprintf(w, "%s: %s for %s (until %s) in zone %s: %s\n", what, t.Mode, t.Remaining,
		t.Until.Local().Format("15:04:05"), strings.Join(resp.Zones, ", "), t.Reason)
	if resp.Warning != "" {
		fmt.Fprintln(w, "warning:", resp.Warning)
	}
	return nil
}

func runRestore(w io.Writer, admin, class, priority, zone string, all bool) error {
	n := 0
	for _, set := range []bool{class != "", priority != "", all} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("give exactly one of: a class, --priority sheddable|normal, --all")
	}
	target := class
	switch {
	case all:
		target = "all"
	case priority != "":
		target = "*"
	}
	path := "/mxgate/shed/" + url.PathEscape(target)
	q := url.Values{}
	if priority != "" {
		q.Set("priority", priority)
	}
	if zone != "" {
		q.Set("zone", zone)
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	c, err := newAdminClient(admin)
	if err != nil {
		return err
	}
	var resp caddymodule.ShedResponse
	if err := c.call(http.MethodDelete, path, nil, &resp); err != nil {
		return err
	}
	return printRestored(w, resp)
}

func printRestored(w io.Writer, resp caddymodule.ShedResponse) error {
	if len(resp.Removed) == 0 {
		fmt.Fprintln(w, "nothing to restore: no such toggle was in force")
	}
	for _, r := range resp.Removed {
		zone, key, _ := strings.Cut(r, "/")
		fmt.Fprintf(w, "restored %s in zone %s\n", key, zone)
	}
	if resp.Warning != "" {
		fmt.Fprintln(w, "warning:", resp.Warning)
	}
	return nil
}
