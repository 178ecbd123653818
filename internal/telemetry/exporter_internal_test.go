package telemetry

import "testing"

func TestExporterProtocol(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    string // "" means no exporter
		wantErr bool
	}{
		{name: "nothing configured", env: nil, want: ""},
		{name: "endpoint only", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"}, want: "grpc"},
		{name: "traces endpoint only", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://jaeger:4318/v1/traces"}, want: "grpc"},
		{name: "otlp without endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: "grpc"},
		{name: "none beats endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"}, want: ""},
		{name: "http protobuf", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, want: "http/protobuf"},
		{name: "traces protocol wins", env: map[string]string{
			"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
		}, want: "http/protobuf"},
		{name: "protocol ignored without exporter", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "bogus"}, want: ""},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}, wantErr: true},
		{name: "exporter list unsupported", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp,console"}, wantErr: true},
		{name: "unknown protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: true},
		{name: "unknown traces protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := exporterProtocol(func(k string) string { return tt.env[k] })
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("protocol = %q, want %q", got, tt.want)
			}
		})
	}
}
