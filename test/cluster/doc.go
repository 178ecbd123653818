// Package cluster holds the Redis Cluster checks that span packages (build
// tag cluster; run by `make cluster`):
//
//   - every per-mission key of a mission — its saga record, event stream and
//     dead letters, barrier marks and effects, map and poses
//     (internal/missionkeys) — lies in one hash slot, for mission ids with
//     "{", "}" and ":" too, except ids beginning with "}", which the API
//     refuses (asserted with CLUSTER KEYSLOT on a real cluster
//     and by writing them all in one MULTI there);
//   - the mapping capacity accounting (internal/mapstore's {mapping} slot)
//     charges, retains, drops and recounts on the cluster;
//   - every Lua script the project declares is listed by its package's
//     Scripts() (the packages' redis.NewScript calls are counted in their
//     source), and every listed script ran on a cluster in the suites `make
//     cluster` ran before this one, or in this one: internal/redistest, in cluster mode,
//     appends the SHA1 of each script it saw run to the file named by
//     SLAMMESH_TEST_SCRIPT_LOG, and fails any test whose script or MULTI
//     touched two slots (redistest.SlotWatch).
package cluster
