package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// synapseRateLimits are the rc_* settings raised so that the suite's
// populations (hundreds of registrations, joins, state events and logins in
// seconds, from one address) meet mxgate's limits, not Synapse's own.
var synapseRateLimits = []string{
	"rc_message", "rc_registration", "rc_registration_token_validity",
	"rc_login.address", "rc_login.account", "rc_login.failed_attempts",
	"rc_admin_redaction", "rc_joins.local", "rc_joins.remote", "rc_joins_per_room",
	"rc_key_requests", "rc_3pid_validation",
	"rc_invites.per_room", "rc_invites.per_user", "rc_invites.per_issuer",
	"rc_third_party_invite", "rc_media_create", "rc_presence.per_user",
	"rc_delayed_event_mgmt", "rc_room_creation", "rc_reports", "rc_user_directory",
}

// synapseConfig is the homeserver.yaml of a test instance: SQLite, one
// client listener on loopback, open registration without verification, no
// federation, presence or stats, cheap password hashing, and background
// database updates run back to back instead of one per second.
const synapseConfig = `server_name: localhost
pid_file: {{work}}/homeserver.pid
listeners:
  - port: {{port}}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {{work}}/homeserver.db
log_config: {{work}}/log.yaml
media_store_path: {{work}}/media
signing_key_path: {{work}}/signing.key
macaroon_secret_key: "{{secret1}}"
form_secret: "{{secret2}}"
report_stats: false
enable_metrics: false
enable_registration: true
enable_registration_without_verification: true
bcrypt_rounds: 4
background_updates:
  sleep_enabled: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
presence:
  enabled: false
stats:
  enabled: false
url_preview_enabled: false
`

// synapseLogConfig sends warnings and worse to stderr (the process log).
const synapseLogConfig = `version: 1
formatters:
  precise:
    format: '%(asctime)s %(name)s %(levelname)s %(message)s'
handlers:
  console:
    class: logging.StreamHandler
    formatter: precise
root:
  level: WARNING
  handlers: [console]
disable_existing_loggers: false
`

// synapse is a running Synapse from the sid root, with its config, SQLite
// database and media in dir. It keeps its address across restarts.
type synapse struct {
	root, dir, addr, version string
	proc                     *process
}

// startSynapse writes a config for a fresh instance in dir, starts Synapse
// on a free loopback port, and waits until it answers and its background
// database updates are done.
func startSynapse(ctx context.Context, root, version, dir string) (*synapse, error) {
	addrs, err := freeLoopbackAddrs(1)
	if err != nil {
		return nil, err
	}
	s := &synapse{root: root, dir: dir, addr: addrs[0], version: version}
	if err := s.writeConfig(); err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	if err := s.waitBackgroundUpdates(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *synapse) writeConfig() error {
	_, port, _ := strings.Cut(s.addr, ":")
	secret := func() string {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}
	cfg := strings.NewReplacer("{{work}}", synapseWorkMount, "{{port}}", port,
		"{{secret1}}", secret(), "{{secret2}}", secret()).Replace(synapseConfig)
	// synapseRateLimits lists the keys of one parent map next to each
	// other, so a parent line is written once, before its first child.
	var limits strings.Builder
	var parentWritten string
	for _, key := range synapseRateLimits {
		const limit = "{per_second: 10000, burst_count: 100000}"
		parent, child, nested := strings.Cut(key, ".")
		if !nested {
			fmt.Fprintf(&limits, "%s: %s\n", key, limit)
			continue
		}
		if parent != parentWritten {
			fmt.Fprintf(&limits, "%s:\n", parent)
			parentWritten = parent
		}
		fmt.Fprintf(&limits, "  %s: %s\n", child, limit)
	}
	// Synapse's signing key format: "ed25519 <key id> <unpadded base64 seed>".
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	key := "ed25519 a_e2e " + base64.RawStdEncoding.EncodeToString(priv.Seed()) + "\n"
	for name, body := range map[string]string{
		"homeserver.yaml": cfg + limits.String(),
		"log.yaml":        synapseLogConfig,
		"signing.key":     key,
	} {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	return os.MkdirAll(filepath.Join(s.dir, "media"), 0o700)
}

// start runs Synapse on s.addr with s.dir's config and database and waits
// until it answers /versions.
func (s *synapse) start(ctx context.Context) error {
	argv := rootCommand(s.root, s.dir, nil,
		"python3", "-m", "synapse.app.homeserver", "-c", synapseWorkMount+"/homeserver.yaml")
	p, err := startProcess("synapse", s.dir, filepath.Join(s.dir, "synapse.log"), nil, argv[0], argv[1:]...)
	if err != nil {
		return err
	}
	// Start-up is 3-4 s on an idle machine, much longer on a loaded one.
	readyCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := waitHTTP(readyCtx, p, s.url()+"/_matrix/client/versions"); err != nil {
		p.stop(10 * time.Second)
		return err
	}
	s.proc = p
	return nil
}

// waitBackgroundUpdates waits until the database's background_updates table
// is empty: a fresh database has about 80 schema updates to run, and they
// stall requests while they do.
func (s *synapse) waitBackgroundUpdates(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	script := `import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30)
while db.execute("SELECT count(*) FROM background_updates").fetchone()[0]:
    time.sleep(0.2)
`
	err := runInRoot(ctx, s.root, s.dir, nil, "python3", "-c", script, synapseWorkMount+"/homeserver.db")
	if err != nil {
		return fmt.Errorf("waiting for Synapse's background updates: %w", err)
	}
	return nil
}

func (s *synapse) url() string { return "http://" + s.addr }

// stop ends Synapse (SIGTERM, then SIGKILL after 10 s). Its mount namespace
// ends with it, so no mount is left behind.
func (s *synapse) stop() {
	if s.proc != nil {
		s.proc.stop(10 * time.Second)
	}
}

// restart stops Synapse and starts it again on the same port and database.
func (s *synapse) restart(ctx context.Context) error {
	s.stop()
	return s.start(ctx)
}
