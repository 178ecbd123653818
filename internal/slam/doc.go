// Package slam is the domain core of slammesh: the small set of types every
// SLAM step agrees on (poses, laser scans) and the typed errors that the gRPC
// services translate into status codes.
//
// The work itself lives in sub-packages, each named for what it provides:
//
//   - grid: occupancy grids in log-odds, ROS-style int8 export, Bresenham
//     scan integration, distance transforms and capacity checks;
//   - world: seeded synthetic worlds (rooms, doors, asymmetric furniture) with
//     ground truth and simulated lidar for up to 16 agents;
//   - match: localization of an agent's submap against a reference grid by
//     coarse-to-fine correlative scan matching refined with ICP, and the
//     round-based LocalizeAll that forms the reference from the anchor agent;
//   - correlate: the correlative block sums both matchers search with;
//   - localslam: the local front end that builds an agent's submap from
//     its scans (scan-to-submap matching);
//   - fuse: warping submaps into a map and summing log-odds, with a
//     consistency gate;
//   - eval: pose and map metrics against ground truth;
//   - render: PNG images of grids.
//
// Frames. The map frame is the frame of the allocated map grid. Every agent
// builds its submap in its own start frame, so the pose that localization
// estimates, map_from_agent, is the agent's start pose expressed in the map
// frame. Poses compose as transforms: map_from_point = map_from_agent ∘
// agent_from_point.
//
// Nothing here starts goroutines except match.LocalizeAll, which bounds them
// by its Parallelism option and waits for all of them before returning.
package slam
