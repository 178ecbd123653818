package orchestrator

// HeldScenarios is how many cached scenario worlds missions of s hold.
func (s *Server) HeldScenarios() int {
	c := s.mission.scenarios
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pinned
}
