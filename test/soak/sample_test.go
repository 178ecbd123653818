//go:build soak

package soak

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// unknown marks a figure a sample could not read (its process was down).
const unknown = -1

// procSample is one orchestrator's figures in a sample.
type procSample struct {
	incarnation int
	goroutines  int64
	fds         int64
}

// sample is the mesh's figures at one moment.
type sample struct {
	at                time.Duration
	started, done     int64
	keys              int64
	usedMemory        int64
	usedMemoryDataset int64
	orch              [2]procSample
	// notes are the harness's faults since the previous sample.
	notes []string
}

// sampler takes a sample of the mesh every so often and keeps them all, for
// the curve and the final checks.
type sampler struct {
	m     *mesh
	begin time.Time
	// started and done count the missions started and ended so far.
	started, done func() int64
	// client reads /metrics; keep-alives off, so that it leaves no idle
	// connection (and goroutine) behind.
	client *http.Client

	mu      sync.Mutex
	samples []sample
	notes   []string
}

func newSampler(m *mesh, begin time.Time, started, done func() int64) *sampler {
	return &sampler{
		m: m, begin: begin, started: started, done: done,
		client: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
}

// note records a fault of the harness; it shows in the next sample's row.
func (s *sampler) note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

// loop samples every period until ctx ends, and prints a sample about once
// a minute so that a long run shows how it goes.
func (s *sampler) loop(ctx context.Context, period time.Duration, log *reporter) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	var printed time.Time
	for {
		sm := s.take(ctx)
		if time.Since(printed) >= time.Minute {
			printed = time.Now()
			log.printf("sample: %d started, %d done; redis %s keys, used_memory %s; goroutines/fds %s, %s",
				sm.started, sm.done, fig(sm.keys), kib(sm.usedMemory), procFig(sm.orch[0]), procFig(sm.orch[1]))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// take reads the figures now, keeps the sample and returns it.
func (s *sampler) take(ctx context.Context) sample {
	sm := sample{at: time.Since(s.begin), started: s.started(), done: s.done(), keys: unknown, usedMemory: unknown, usedMemoryDataset: unknown}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if n, err := s.m.rdb.DBSize(cctx).Result(); err == nil {
		sm.keys = n
	}
	if info, err := s.m.rdb.Info(cctx, "memory").Result(); err == nil {
		sm.usedMemory = parseInt(infoField(info, "used_memory"))
		sm.usedMemoryDataset = parseInt(infoField(info, "used_memory_dataset"))
	}
	for i, r := range s.m.replicas {
		p, inc, a := r.current()
		ps := procSample{incarnation: inc, goroutines: unknown, fds: unknown}
		if p != nil && p.Alive() {
			ps.goroutines = s.goroutines(cctx, a.HTTP)
			ps.fds = openFDs(p.PID())
		}
		sm.orch[i] = ps
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sm.notes, s.notes = s.notes, nil
	s.samples = append(s.samples, sm)
	return sm
}

// all returns the samples taken so far.
func (s *sampler) all() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.samples...)
}

// goroutines reads go_goroutines from the /metrics page at httpAddr, or
// unknown.
func (s *sampler) goroutines(ctx context.Context, httpAddr string) int64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return unknown
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return unknown
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return unknown
	}
	return metricValue(resp.Body, "go_goroutines")
}

// metricValue returns the value of the unlabelled metric name in a
// Prometheus text exposition, or unknown.
func metricValue(r io.Reader, name string) int64 {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), name+" ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return unknown
		}
		return int64(f)
	}
	return unknown
}

// openFDs counts the open file descriptors of process pid (Linux /proc), or
// unknown.
func openFDs(pid int) int64 {
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return unknown
	}
	return int64(len(entries))
}

func parseInt(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return unknown
	}
	return n
}

// printCurve writes the samples as a table.
func printCurve(w io.Writer, samples []sample, names [2]string) {
	fmt.Fprintf(w, "%7s %7s %6s %7s %10s %10s  %-17s %-17s %s\n",
		"t", "started", "done", "keys", "used_mem", "dataset", names[0]+" g/fd", names[1]+" g/fd", "faults since the previous row")
	for _, s := range samples {
		fmt.Fprintf(w, "%6.0fs %7d %6d %7s %10s %10s  %-17s %-17s %s\n",
			s.at.Seconds(), s.started, s.done, fig(s.keys), kib(s.usedMemory), kib(s.usedMemoryDataset),
			procFig(s.orch[0]), procFig(s.orch[1]), strings.Join(s.notes, "; "))
	}
}

func fig(n int64) string {
	if n == unknown {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

func kib(n int64) string {
	if n == unknown {
		return "-"
	}
	return fmt.Sprintf("%.0fK", float64(n)/1024)
}

func procFig(p procSample) string {
	return fmt.Sprintf("#%d %s/%s", p.incarnation, fig(p.goroutines), fig(p.fds))
}
