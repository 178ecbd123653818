package main

import (
	"context"
	"fmt"
	"io"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/missionfmt"
)

// cmdDelete removes a finished mission and all its data now (DeleteMission),
// instead of at the end of its retention period.
func cmdDelete(ctx context.Context, c *clients, g global, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("delete", "delete MISSION_ID", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	id, err := oneMissionID(fs)
	if err != nil {
		return err
	}
	resp, err := c.orchestrator.DeleteMission(ctx, &orchestratorv1.DeleteMissionRequest{MissionId: id})
	if err != nil {
		return rpcError("delete mission", err)
	}
	if g.json {
		return printJSON(stdout, resp)
	}
	fmt.Fprintf(stdout, "deleted mission %s (%s) and all its data\n", id, missionfmt.State(resp.GetMission().GetState()))
	return nil
}
