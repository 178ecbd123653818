// Package slamio reads the files real robots leave behind and writes maps
// that a ROS navigation stack loads, so that a team can bring its own data
// to a slammesh mission and take the merged map home.
//
// Inputs:
//   - CARMEN laser logs (FLASER, ROBOTLASER1 and ODOM lines, plain or gzip),
//     as written by CARMEN's logger and distributed by Radish; see
//     ParseCarmen and CarmenAgents, which cut a log into agents by reading
//     ranges.
//   - ROS map_server maps (a .yaml beside a .pgm, P2 or P5), read with the
//     semantics of nav2_map_server's map_io.cpp (modes trinary, scale and
//     raw, negate, thresholds, origin with yaw); see ReadROSMap.
//
// Output: WriteROSMap saves an occupancy grid as .yaml + .pgm that Nav2's
// map_server loads (trinary with thresholds 0.65 / 0.25 by default, or raw,
// which keeps every cell value).
//
// Every parse error names the file and the line (or, inside a binary PGM,
// the byte offset), because the person reading it has the file open, not
// the code.
package slamio
