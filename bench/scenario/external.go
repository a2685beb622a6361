package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/mxgate/mxgate/internal/freeport"
)

// external is a peer run as a child process with a generated config in a
// temporary directory: caddy, mxgate, nginx or haproxy.
type external struct {
	kind string
	o    PeerOptions

	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func newExternal(kind string, o PeerOptions) *external { return &external{kind: kind, o: o} }

func (p *external) Name() string { return p.kind }

// Start writes the peer's config, starts it and waits (bounded) until it
// accepts connections.
func (p *external) Start(upstream string) (string, error) {
	up, err := url.Parse(upstream)
	if err != nil {
		return "", err
	}
	listen, err := freeLoopbackAddr()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "mxbench-"+p.kind+"-")
	if err != nil {
		return "", err
	}
	p.dir = dir
	bin, args, err := p.command(dir, listen, up.Host)
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	logf, err := os.Create(filepath.Join(dir, "peer.log"))
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return "", fmt.Errorf("%s: %w", p.kind, err)
	}
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	if err := p.waitReady(listen); err != nil {
		_ = p.Stop()
		return "", err
	}
	return "http://" + listen, nil
}

// waitReady dials listen until it answers, the process dies, or 20 s pass.
func (p *external) waitReady(listen string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited at start: %s", p.kind, p.logTail())
		default:
		}
		if c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not listen on %s within 20s: %s", p.kind, listen, p.logTail())
}

func (p *external) logTail() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "peer.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// Stop terminates the process group (SIGTERM, then SIGKILL after 5 s) and
// removes the temporary directory.
func (p *external) Stop() error {
	if p.cmd == nil || p.cmd.Process == nil {
		return nil
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
	return os.RemoveAll(p.dir)
}

// command returns the program and arguments for the peer, writing its
// config into dir.
func (p *external) command(dir, listen, upstream string) (string, []string, error) {
	switch p.kind {
	case "caddy":
		bin, err := p.mxgateBinary()
		if err != nil {
			return "", nil, err
		}
		cfg := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(cfg, []byte(caddyfile(listen, upstream, false)), 0o644); err != nil {
			return "", nil, err
		}
		return bin, []string{"run", "--config", cfg, "--adapter", "caddyfile"}, nil
	case "mxgate":
		bin, err := p.mxgateBinary()
		if err != nil {
			return "", nil, err
		}
		admin, err := freeLoopbackAddr()
		if err != nil {
			return "", nil, err
		}
		return bin, []string{"gateway", "--upstream", "http://" + upstream, "--listen", listen, "--admin", admin}, nil
	case "nginx":
		bin, err := lookProgram("nginx")
		if err != nil {
			return "", nil, err
		}
		cfg := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(cfg, []byte(nginxConf(dir, listen, upstream)), 0o644); err != nil {
			return "", nil, err
		}
		return bin, []string{"-p", dir + "/", "-c", cfg, "-e", filepath.Join(dir, "error.log")}, nil
	case "haproxy":
		bin, err := lookProgram("haproxy")
		if err != nil {
			return "", nil, err
		}
		cfg := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(cfg, []byte(haproxyConf(listen, upstream)), 0o644); err != nil {
			return "", nil, err
		}
		return bin, []string{"-db", "-f", cfg}, nil
	}
	return "", nil, fmt.Errorf("unknown external peer %q", p.kind)
}

// lookProgram finds a program on PATH or in /usr/sbin (where Debian puts
// nginx and haproxy, often not on a user's PATH).
func lookProgram(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if p := filepath.Join("/usr/sbin", name); isExecutable(p) {
		return p, nil
	}
	return "", fmt.Errorf("%s: %w", name, ErrNotInstalled)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

var mxgateBuild struct {
	once sync.Once
	path string
	err  error
}

// RemoveBuiltBinaries deletes the mxgate binary the caddy and mxgate peers
// built, if any. Call it when the last run is over.
func RemoveBuiltBinaries() {
	if p := mxgateBuild.path; p != "" {
		_ = os.Remove(p)
	}
}

// mxgateBinary returns PeerOptions.MxgateBinary, or builds ./cmd/mxgate of
// the enclosing module once per process.
func (p *external) mxgateBinary() (string, error) {
	if p.o.MxgateBinary != "" {
		return p.o.MxgateBinary, nil
	}
	b := &mxgateBuild
	b.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			b.err = err
			return
		}
		if _, err := os.Stat(filepath.Join(root, "cmd", "mxgate")); err != nil {
			b.err = fmt.Errorf("cmd/mxgate: %w", ErrNotInstalled)
			return
		}
		out := filepath.Join(os.TempDir(), fmt.Sprintf("mxbench-mxgate-%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-o", out, "./cmd/mxgate")
		cmd.Dir = root
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building cmd/mxgate: %v: %s", err, msg)
			return
		}
		b.path = out
	})
	return b.path, b.err
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 64 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("no go.mod above the working directory")
}

// freeLoopbackAddr returns a loopback address for a peer process to bind
// (see package freeport for why not port 0).
func freeLoopbackAddr() (string, error) { return freeport.Loopback() }
