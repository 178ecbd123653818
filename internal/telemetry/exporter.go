package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Environment variables that decide whether and how spans are exported. The
// OTLP exporters read the rest (endpoint, headers, TLS, timeout) themselves.
const (
	envTracesExporter     = "OTEL_TRACES_EXPORTER"
	envMetricsExporter    = "OTEL_METRICS_EXPORTER"
	envExemplarFilter     = "OTEL_METRICS_EXEMPLAR_FILTER"
	envOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envOTLPProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envOTLPTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	protocolGRPC          = "grpc"
	protocolHTTPProtobuf  = "http/protobuf"
	exporterNone          = "none"
	exporterOTLP          = "otlp"
)

// exporterProtocol decides from the environment whether spans are exported and
// over which OTLP protocol. It returns "" when nothing is to be exported. It
// takes getenv so that tests need not mutate the process environment.
func exporterProtocol(getenv func(string) string) (string, error) {
	switch kind := strings.TrimSpace(getenv(envTracesExporter)); kind {
	case exporterNone:
		return "", nil
	case "":
		if getenv(envOTLPEndpoint) == "" && getenv(envOTLPTracesEndpoint) == "" {
			return "", nil
		}
	case exporterOTLP:
	default:
		return "", fmt.Errorf("%s=%q: supported values are %q and %q", envTracesExporter, kind, exporterOTLP, exporterNone)
	}

	key, protocol := envOTLPTracesProtocol, strings.TrimSpace(getenv(envOTLPTracesProtocol))
	if protocol == "" {
		key, protocol = envOTLPProtocol, strings.TrimSpace(getenv(envOTLPProtocol))
	}
	switch protocol {
	case "":
		return protocolGRPC, nil
	case protocolGRPC, protocolHTTPProtobuf:
		return protocol, nil
	default:
		return "", fmt.Errorf("%s=%q: supported values are %q and %q", key, protocol, protocolGRPC, protocolHTTPProtobuf)
	}
}

// newSpanExporter returns the OTLP exporter the process environment asks for,
// or nil when spans are not to be exported. Creating an exporter does not
// connect: an unreachable collector shows up as export errors, not as a Setup
// failure.
func newSpanExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	protocol, err := exporterProtocol(os.Getenv)
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	switch protocol {
	case "":
		return nil, nil
	case protocolGRPC:
		exp, err = otlptracegrpc.New(ctx)
	case protocolHTTPProtobuf:
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp %s trace exporter: %w", protocol, err)
	}
	return exp, nil
}
