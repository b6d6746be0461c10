// Package testserver starts a real `tokenwire serve --demo --port 0` for tests, as a
// user runs it, and reads the port from its "tokenwire serving on HOST:PORT" line.
//
// The executable is $TOKENWIRE_BIN, else the repository's .venv/bin/tokenwire (found by
// walking up from the working directory). The demo models are built into
// $TOKENWIRE_DEMO_DIR, else into a fresh temporary directory.
package testserver

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Server is a running `tokenwire serve` subprocess.
type Server struct {
	Target string // "127.0.0.1:PORT"

	cmd     *exec.Cmd
	tempDir string
	mu      sync.Mutex
	output  strings.Builder
	done    chan struct{}
}

var servingLine = regexp.MustCompile(`tokenwire serving on ([\d.]+):(\d+)`)

// Executable finds the tokenwire command.
func Executable() (string, error) {
	if bin := os.Getenv("TOKENWIRE_BIN"); bin != "" {
		return bin, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		candidate := filepath.Join(dir, ".venv", "bin", "tokenwire")
		if _, err := os.Stat(candidate); err == nil {
			return candidate, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("tokenwire executable not found: set TOKENWIRE_BIN or run `make install` at the repository root")
		}
		dir = parent
	}
}

// Start launches the server on the demo models and waits (up to timeout) for its
// serving line. The models may still be loading then: wait on health for them.
func Start(timeout time.Duration, extraArgs ...string) (*Server, error) {
	bin, err := Executable()
	if err != nil {
		return nil, err
	}
	s := &Server{done: make(chan struct{})}
	demoDir := os.Getenv("TOKENWIRE_DEMO_DIR")
	if demoDir == "" {
		if s.tempDir, err = os.MkdirTemp("", "tokenwire-go-demo-"); err != nil {
			return nil, err
		}
		demoDir = s.tempDir
	}
	args := append([]string{"serve", "--demo", "--demo-dir", demoDir, "--host", "127.0.0.1", "--port", "0"}, extraArgs...)
	s.cmd = exec.Command(bin, args...)
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s.cmd.Stderr = s.cmd.Stdout
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	found := make(chan string, 1)
	go func() {
		defer close(s.done)
		scanner := bufio.NewScanner(stdout)
		scanner.Buffer(make([]byte, 64<<10), 1<<20)
		for scanner.Scan() {
			line := scanner.Text()
			s.mu.Lock()
			s.output.WriteString(line + "\n")
			s.mu.Unlock()
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1] + ":" + m[2]:
				default:
				}
			}
		}
	}()
	select {
	case s.Target = <-found:
		return s, nil
	case <-s.done:
		s.Stop()
		return nil, fmt.Errorf("tokenwire serve exited early:\n%s", s.Output())
	case <-time.After(timeout):
		s.Stop()
		return nil, fmt.Errorf("tokenwire serve printed no serving line in %s:\n%s", timeout, s.Output())
	}
}

// Output is everything the server printed so far.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.output.String()
}

// Stop sends SIGTERM (the server drains), waits up to 30 s, then kills it.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		// The reader sees EOF when the process exits; only then may Wait close the pipe.
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		_ = s.cmd.Wait()
	}
	if s.tempDir != "" {
		_ = os.RemoveAll(s.tempDir)
	}
}
