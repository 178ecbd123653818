package match

// RealMission is realMission, for the external tests.
var RealMission = realMission
