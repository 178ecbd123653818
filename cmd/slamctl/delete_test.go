package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
)

// deleteOrchestrator deletes "done" once and refuses "running".
type deleteOrchestrator struct {
	orchestratorv1.UnimplementedOrchestratorServiceServer
	deleted []string
}

func (f *deleteOrchestrator) DeleteMission(_ context.Context, req *orchestratorv1.DeleteMissionRequest) (*orchestratorv1.DeleteMissionResponse, error) {
	switch req.GetMissionId() {
	case "running":
		return nil, status.Error(codes.FailedPrecondition, `mission "running" is MISSION_STATE_RUNNING: only a finished mission can be deleted; cancel it first`)
	case "done":
		f.deleted = append(f.deleted, "done")
		return &orchestratorv1.DeleteMissionResponse{Mission: &orchestratorv1.Mission{MissionId: "done", State: orchestratorv1.MissionState_MISSION_STATE_COMPLETED}}, nil
	}
	return nil, status.Error(codes.NotFound, "not found")
}

func TestDelete(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := &deleteOrchestrator{}
	orchestratorv1.RegisterOrchestratorServiceServer(srv, fake)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	slamctl := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append([]string{"--addr", l.Addr().String()}, args...), func(string) string { return "" }, &stdout, &stderr)
		return stdout.String(), err
	}
	out, err := slamctl("delete", "done")
	if err != nil || !strings.Contains(out, "deleted mission done") {
		t.Errorf("delete done: %q, %v", out, err)
	}
	if len(fake.deleted) != 1 {
		t.Errorf("DeleteMission calls %v", fake.deleted)
	}
	if _, err := slamctl("delete", "running"); err == nil || !strings.Contains(err.Error(), "cancel it first") {
		t.Errorf("delete running: %v", err)
	}
	if _, err := slamctl("delete"); err == nil {
		t.Error("delete without an id succeeded")
	}
}
