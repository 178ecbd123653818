package mapping_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mappingv1 "github.com/slammesh/slammesh/gen/slammesh/mapping/v1"
	"github.com/slammesh/slammesh/internal/rpcerr"
	"github.com/slammesh/slammesh/internal/steptest"
	"github.com/slammesh/slammesh/services/mapping"
)

// StreamMap sends the same map as GetMap, cells then PNG, in chunks no
// larger than asked for; its header announces the sizes.
func TestStreamMapMatchesGetMap(t *testing.T) {
	e := start(t, mapping.Config{})
	ctx := steptest.Context(t)
	const m = "m-stream"
	if _, err := e.client.AllocateMap(ctx, &mappingv1.AllocateMapRequest{Saga: e.Saga(m), Spec: office()}); err != nil {
		t.Fatal(err)
	}
	want, err := e.client.GetMap(ctx, &mappingv1.GetMapRequest{MissionId: m, IncludePng: true})
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 10_000
	stream, err := e.client.StreamMap(ctx, &mappingv1.StreamMapRequest{MissionId: m, IncludePng: true, ChunkBytes: chunk})
	if err != nil {
		t.Fatal(err)
	}
	var first *mappingv1.StreamMapResponse
	var cells, png []byte
	messages := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		messages++
		if first == nil {
			first = resp
		} else if resp.GetMapId() != "" || resp.GetMeta() != nil {
			t.Errorf("message %d repeats the header", messages)
		}
		if len(resp.GetCells()) > chunk || len(resp.GetPng()) > chunk {
			t.Errorf("message %d carries %d cells and %d PNG bytes, over the %d-byte chunk", messages, len(resp.GetCells()), len(resp.GetPng()), chunk)
		}
		if len(resp.GetPng()) > 0 && len(cells) < officeCells {
			t.Errorf("PNG bytes before the last cell")
		}
		cells = append(cells, resp.GetCells()...)
		png = append(png, resp.GetPng()...)
	}
	if first.GetMapId() != want.GetMapId() || first.GetVersion() != want.GetVersion() || first.GetTotalCells() != officeCells ||
		first.GetPngBytes() != uint64(len(want.GetPng())) || first.GetMeta().GetWidth() != 400 {
		t.Errorf("header %v, want map %s version %d, %d cells, %d PNG bytes", first, want.GetMapId(), want.GetVersion(), officeCells, len(want.GetPng()))
	}
	if !bytes.Equal(cells, want.GetGrid().GetData()) || !bytes.Equal(png, want.GetPng()) {
		t.Errorf("streamed %d cells and %d PNG bytes differ from GetMap's %d and %d", len(cells), len(png), len(want.GetGrid().GetData()), len(want.GetPng()))
	}
	if least := officeCells/chunk + 1; messages < least {
		t.Errorf("%d messages, want at least %d", messages, least)
	}

	for name, tt := range map[string]struct {
		req    *mappingv1.StreamMapRequest
		code   codes.Code
		reason string
	}{
		"unknown mission": {&mappingv1.StreamMapRequest{MissionId: "m-none"}, codes.NotFound, rpcerr.ReasonMapNotFound},
		"missing version": {&mappingv1.StreamMapRequest{MissionId: m, Version: 9}, codes.NotFound, rpcerr.ReasonMapNotFound},
		"chunk too large": {&mappingv1.StreamMapRequest{MissionId: m, ChunkBytes: 64 << 20}, codes.InvalidArgument, rpcerr.ReasonInvalidField},
		"chunk too small": {&mappingv1.StreamMapRequest{MissionId: m, ChunkBytes: 1}, codes.InvalidArgument, rpcerr.ReasonInvalidField},
	} {
		stream, err := e.client.StreamMap(ctx, tt.req)
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != tt.code || rpcerr.Reason(err) != tt.reason {
			t.Errorf("%s: %v (reason %q), want %v %s", name, err, rpcerr.Reason(err), tt.code, tt.reason)
		}
	}
}
