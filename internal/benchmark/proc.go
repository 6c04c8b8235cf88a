package benchmark

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DebugAddrEnv names the environment variable that makes `warren serve` and
// `warren localproxy` serve net/http/pprof on a loopback address; the bench
// reads their goroutine counts there.
const DebugAddrEnv = "WARREN_DEBUG_ADDR"

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// child is a process the bench started. It is in its own process group (so
// a Ctrl-C in the terminal reaches only the bench, which stops it in order)
// and dies with the bench's thread if the bench dies without stopping it.
type child struct {
	name      string
	cmd       *exec.Cmd
	cancel    context.CancelFunc
	done      chan struct{}
	err       error
	log       *tailBuffer
	debugAddr string // pprof address, "" when the process has none
}

// startChild runs path with args. stdout, when not nil, receives the
// process's standard output; its standard error is kept (the last 64 KiB)
// for error messages.
func startChild(ctx context.Context, name string, env []string, stdout io.Writer, path string, args ...string) (*child, error) {
	cctx, cancel := context.WithCancel(ctx)
	c := &child{name: name, cancel: cancel, done: make(chan struct{}), log: &tailBuffer{max: 64 << 10}}
	c.cmd = exec.CommandContext(cctx, path, args...)
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stderr = c.log
	c.cmd.Stdout = stdout
	if stdout == nil {
		c.cmd.Stdout = c.log
	}
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A stop is a SIGTERM, so the process shuts down as a user's would;
	// one that hangs is killed.
	c.cmd.Cancel = func() error { return c.cmd.Process.Signal(syscall.SIGTERM) }
	c.cmd.WaitDelay = 5 * time.Second
	if err := c.cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop ends the process and waits for it.
func (c *child) stop() {
	c.cancel()
	<-c.done
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// failure describes a process that ended early, with the end of its log.
func (c *child) failure() error {
	return fmt.Errorf("%s exited (%v):\n%s", c.name, c.err, c.log.String())
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// cpuSeconds is the user plus system CPU time pid has used.
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses; fields are
	// counted from after its closing parenthesis (field 3 is the state).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return float64(utime+stime) / clockTicks, nil
}

// rssKiB is pid's resident set size.
func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// fdCount is the number of pid's open file descriptors.
func fdCount(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// debugClient fetches goroutine profiles without keeping connections open,
// so that reading a count does not change it.
var debugClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// goroutines reads the goroutine count from a process's pprof endpoint; -1
// when it has none.
func (c *child) goroutines(ctx context.Context) (int, error) {
	if c.debugAddr == "" {
		return -1, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.debugAddr+"/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := debugClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s goroutines: %w", c.name, err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("%s goroutines: %w", c.name, err)
	}
	n, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("%s goroutines: unexpected profile head %q", c.name, line)
	}
	return strconv.Atoi(n)
}

// listening reports whether something listens on loopback TCP port.
func listening(port int) bool {
	want := fmt.Sprintf(":%04X ", port)
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			// f[1] is local_address, f[3] the state: 0A is LISTEN.
			if len(f) > 3 && f[3] == "0A" && strings.HasSuffix(f[1]+" ", want) {
				return true
			}
		}
	}
	return false
}
