package console

import (
	"fmt"
	"html/template"

	"google.golang.org/protobuf/types/known/timestamppb"
)

// funcs are the template helpers. The ones returning template.CSS build
// style attributes from numbers and from the console's own palette only,
// never from a request or a mission.
var funcs = template.FuncMap{
	"stamp": func(ts *timestamppb.Timestamp) string {
		if ts == nil {
			return ""
		}
		return ts.AsTime().UTC().Format("2006-01-02 15:04:05.000 UTC")
	},
	"percent": func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	// typeClass turns an event type into a class name: step.failed → step-failed.
	"typeClass": func(t string) string {
		b := []byte(t)
		for i, c := range b {
			if c == '.' {
				b[i] = '-'
			}
		}
		return string(b)
	},
	"lastEventID": func(events []eventView) string {
		if len(events) == 0 {
			return "0"
		}
		return events[len(events)-1].ID
	},
	"bar": func(left, width float64) template.CSS {
		return template.CSS(fmt.Sprintf("left:%.2f%%;width:%.2f%%", left, width))
	},
	"height": func(pct float64) template.CSS {
		return template.CSS(fmt.Sprintf("height:%.2f%%", pct))
	},
	"swatch": func(colour template.CSS) template.CSS {
		return "background:" + colour
	},
}
