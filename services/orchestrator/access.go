package orchestrator

import (
	"context"

	orchestratorv1 "github.com/slammesh/slammesh/gen/slammesh/orchestrator/v1"
	"github.com/slammesh/slammesh/internal/auth"
)

// MethodRoles is the least role of every OrchestratorService method
// (docs/security.md, "Roles"). A method missing here is refused to every
// caller when authentication is on, so a new RPC must be given a role.
var MethodRoles = map[string]auth.Role{
	orchestratorv1.OrchestratorService_GetMission_FullMethodName:    auth.RoleViewer,
	orchestratorv1.OrchestratorService_ListMissions_FullMethodName:  auth.RoleViewer,
	orchestratorv1.OrchestratorService_WatchMission_FullMethodName:  auth.RoleViewer,
	orchestratorv1.OrchestratorService_StartMission_FullMethodName:  auth.RoleOperator,
	orchestratorv1.OrchestratorService_CancelMission_FullMethodName: auth.RoleOperator,
	orchestratorv1.OrchestratorService_ResumeMission_FullMethodName: auth.RoleAdmin,
	orchestratorv1.OrchestratorService_DeleteMission_FullMethodName: auth.RoleAdmin,
}

// AccessPolicy is the orchestrator's authorization: MethodRoles, health and
// reflection open, and fault plans in StartMission for admins only (a
// fault plan makes the services fail on purpose, which is a weapon against
// a production mesh that allows fault injection).
func AccessPolicy() auth.Policy {
	return auth.Policy{
		Methods: MethodRoles,
		Open:    auth.HealthAndReflection,
		Request: func(_ context.Context, p auth.Principal, _ string, req any) error {
			if r, ok := req.(*orchestratorv1.StartMissionRequest); ok && len(r.GetFaults().GetFaults()) > 0 && p.Role < auth.RoleAdmin {
				return auth.Denied(auth.RoleAdmin, "StartMission with a fault plan")
			}
			return nil
		},
	}
}
