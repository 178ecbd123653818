package fuse

// KeptWindows counts the inputs of m whose warped window it kept and those
// Contributors warps again (refused inputs and inputs off the map are
// neither).
func KeptWindows(m *Merger) (kept, rewarped int) {
	for k, win := range m.windows {
		switch {
		case win.v != nil:
			kept++
		case m.inputs[k].Submap != nil && m.inputs[k].Pose.Validate() == nil:
			var w warper
			w.init(m.out.Meta(), m.inputs[k].Submap, m.inputs[k].Pose)
			if !w.empty {
				rewarped++
			}
		}
	}
	return kept, rewarped
}
