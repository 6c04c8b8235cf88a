package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/warrentunnel/warren/internal/localproxy"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// NotifyTopic is the topic a thing's tunnel notifications arrive on, as AWS
// IoT Secure Tunneling publishes them.
func NotifyTopic(thingName string) string { return "$aws/things/" + thingName + "/tunnels/notify" }

// maxNotification bounds a notification's payload: a token is at most 4096
// bytes, and AWS's JSON around it a few hundred.
const maxNotification = 16 << 10

// maxServices bounds the services a notification may name (AWS allows 3 per
// tunnel; the margin is for other implementations).
const maxServices = 64

var regionPattern = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Notification is the JSON AWS publishes on a thing's notify topic when a
// tunnel to it is opened or its destination token rotated.
type Notification struct {
	ClientAccessToken string   `json:"clientAccessToken"`
	ClientMode        string   `json:"clientMode"`
	Region            string   `json:"region"`
	Services          []string `json:"services"`
}

// Errors of ParseNotification. None of them quotes the payload, which holds a
// token.
var (
	ErrNotificationSize = errors.New("notification larger than 16 KiB")
	ErrNotificationJSON = errors.New("notification is not a JSON object of clientAccessToken, clientMode, region and services")
)

// ParseNotification decodes and checks a notification: a valid access token,
// a region of lowercase letters, digits and hyphens (or none), and valid,
// distinct service names (sorted). It does not check clientMode, which the
// agent acts on.
func ParseNotification(payload []byte) (Notification, error) {
	if len(payload) > maxNotification {
		return Notification{}, ErrNotificationSize
	}
	var n Notification
	if err := json.Unmarshal(payload, &n); err != nil {
		return Notification{}, ErrNotificationJSON
	}
	if err := localproxy.ValidateAccessToken(n.ClientAccessToken); err != nil {
		return Notification{}, fmt.Errorf("notification: %w", err)
	}
	if n.Region != "" && !regionPattern.MatchString(n.Region) {
		return Notification{}, errors.New("notification: invalid region: want lowercase letters, digits and hyphens")
	}
	if len(n.Services) > maxServices {
		return Notification{}, fmt.Errorf("notification names %d services; at most %d", len(n.Services), maxServices)
	}
	for _, s := range n.Services {
		if !tunnel.ValidName(s) {
			return Notification{}, errors.New("notification: invalid service name: want 1-128 of [a-zA-Z0-9:_-]")
		}
	}
	slices.Sort(n.Services)
	n.Services = slices.Compact(n.Services)
	return n, nil
}
