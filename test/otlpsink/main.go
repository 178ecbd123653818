// Command otlpsink is an OTLP/gRPC trace collector that only counts what it
// receives: the loopback collector of the traced benchmark (issue 9: with
// every span exported, overhead missions keep at least 0.85 of their
// untraced rate). It stands in for Jaeger's OTLP port, which this machine
// cannot run, and costs the exporter the same: the spans are decoded by the
// gRPC server, then dropped.
//
//	go run ./test/otlpsink -addr 127.0.0.1:4317
//	OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 slammesh dev ...
//
// It prints the spans and export requests received every -every (default
// 5s) and at exit (SIGINT, SIGTERM), with -names also the spans per name
// and service.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// sink is the trace service: it counts spans and requests (and, when
// byName is not nil, spans per service and name).
type sink struct {
	collectortrace.UnimplementedTraceServiceServer
	spans, requests atomic.Int64

	mu     sync.Mutex
	byName map[string]int64
}

// Export counts the spans of one export request.
func (s *sink) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	n := 0
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
			if s.byName == nil {
				continue
			}
			s.mu.Lock()
			for _, sp := range ss.GetSpans() {
				s.byName[service+" "+nameShape(sp.GetName())]++
			}
			s.mu.Unlock()
		}
	}
	s.spans.Add(int64(n))
	s.requests.Add(1)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// nameShape folds the mission id out of a span name ("mission m-1" is
// counted as "mission …"), so that names can be counted.
func nameShape(name string) string {
	if strings.HasPrefix(name, "mission ") {
		return "mission …"
	}
	return name
}

func main() {
	addr := flag.String("addr", "127.0.0.1:4317", "listen address (loopback only: the sink has no authentication)")
	every := flag.Duration("every", 5*time.Second, "how often to print the counts (0: only at exit)")
	names := flag.Bool("names", false, "count the spans per service and name too, printed at exit")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatalf("otlpsink: -addr %q: %v", *addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("otlpsink: -addr %q: want a loopback address", *addr)
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("otlpsink: %v", err)
	}
	s := &sink{}
	if *names {
		s.byName = make(map[string]int64)
	}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, s)
	go func() {
		if err := srv.Serve(lis); err != nil {
			log.Fatalf("otlpsink: %v", err)
		}
	}()
	fmt.Printf("otlpsink: listening on %s\n", lis.Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	var tick <-chan time.Time
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		tick = t.C
	}
	report := func() {
		fmt.Printf("otlpsink: %d spans in %d export requests\n", s.spans.Load(), s.requests.Load())
	}
	for {
		select {
		case <-tick:
			report()
		case <-stop:
			srv.Stop()
			report()
			s.printNames()
			return
		}
	}
}

// printNames prints the spans per service and name, most first.
func (s *sink) printNames() {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return s.byName[names[i]] > s.byName[names[j]] })
	for _, n := range names {
		fmt.Printf("%10d  %s\n", s.byName[n], n)
	}
}
