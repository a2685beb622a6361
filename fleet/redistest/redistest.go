// Package redistest runs Debian's real redis-server for tests and
// benchmarks, on a free loopback port in a temporary directory, without
// persistence. When the binary is missing it is installed with apt-get (as
// root; otherwise a test is skipped saying so).
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/freeport"
)

// Server is one redis-server process. Kill and Restart simulate Redis
// going away and coming back on the same address.
type Server struct {
	Addr string // 127.0.0.1:port
	bin  string
	dir  string
	cmd  *exec.Cmd
	tb   testing.TB // nil outside a test
}

// Start starts a redis-server for tb and stops it when tb ends; tb is
// skipped when redis-server is missing and cannot be installed.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		tb.Skip(err.Error())
	}
	s, err := start(bin, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	s.tb = tb
	tb.Cleanup(s.Kill)
	return s
}

// StartIn starts a redis-server with its files in dir, outside a test;
// the caller stops it with Kill.
func StartIn(dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	return start(bin, dir)
}

func start(bin, dir string) (*Server, error) {
	port, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), bin: bin, dir: dir}
	return s, s.restart()
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Restart starts the server (again) on its address and waits until it
// answers PING, for at most 10 seconds; it fails the test if it does not.
func (s *Server) Restart() {
	s.tb.Helper()
	if err := s.restart(); err != nil {
		s.tb.Fatal(err)
	}
}

func (s *Server) restart() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--protected-mode", "yes", "--daemonize", "no")
	log, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for !ping(s.Addr) {
		if time.Now().After(deadline) {
			s.Kill()
			b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redis-server on %s did not answer within 10s; log:\n%s", s.Addr, b)
		}
		time.Sleep(20 * time.Millisecond) // polling a process we just started, bounded above
	}
	return nil
}

// Kill stops the server at once (SIGKILL) and waits for it to exit.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// Binary returns the path of redis-server, installing Debian's package
// first if it is missing and this process runs as root. The install is
// serialised by a lock file in the user cache directory, so parallel test
// binaries do not run apt-get at once. The error explains a skip.
func Binary() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("redis-server is not installed and this test is not root: apt-get install redis-server to run it")
	}
	unlock, err := lockInstall()
	if err != nil {
		return "", err
	}
	defer unlock()
	if p, err := exec.LookPath("redis-server"); err == nil { // another process installed it
		return p, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	apt := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	install := []string{"install", "-y", "--no-install-recommends", "redis-server"}
	if err := apt(install...); err != nil {
		// The package lists may be missing on a fresh machine.
		if err := apt("update"); err != nil {
			return "", err
		}
		if err := apt(install...); err != nil {
			return "", err
		}
	}
	return exec.LookPath("redis-server")
}

func lockInstall() (unlock func(), err error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "mxgate")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "redis-install.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
