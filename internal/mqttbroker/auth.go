package mqttbroker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// lookupTimeout bounds a store lookup made for one packet.
const lookupTimeout = 5 * time.Second

// authHook admits a client by its certificate and limits it to its things'
// topics. Every check asks the store, so a status change or a detachment
// takes effect at the next packet, and a revocation also disconnects at once
// (Broker.DisconnectCertificate).
type authHook struct {
	mqtt.HookBase
	ids Identities
	log *slog.Logger
}

func (h *authHook) ID() string { return "warren-device-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

// identity is the certificate a client presented, if the store knows it and
// it is ACTIVE, with its things.
func (h *authHook) identity(cl *mqtt.Client) (id string, things []string, ok bool) {
	id = certificateID(cl)
	if id == "" {
		return "", nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	c, things, err := h.ids.CertificateThings(ctx, id)
	switch {
	case errors.Is(err, tunnel.ErrNotFound):
		return id, nil, false
	case err != nil:
		h.log.Error("look up a device certificate", "certificate", id, "err", err)
		return id, nil, false
	}
	return id, things, c.Status == tunnel.CertActive
}

// OnConnectAuthenticate admits a client whose certificate is known and
// ACTIVE. Its client id is then prefixed with the certificate's id, so that
// a device cannot take over (or disconnect) another certificate's session
// by naming its client id.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	id, _, ok := h.identity(cl)
	if !ok {
		h.log.Info("MQTT connection refused: no active device certificate", "remote", cl.Net.Remote, "certificate", id)
		return false
	}
	cl.ID = id + "/" + cl.ID
	h.log.Debug("MQTT client connected", "client", cl.ID, "remote", cl.Net.Remote)
	return true
}

// OnACLCheck allows a topic (or a subscription's filter) under
// $aws/things/<thing>/ of a thing the client's certificate is attached to.
// The thing names' characters (tunnel.ValidName) include no MQTT wildcard
// nor '/', so a prefix match cannot reach another thing.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	_, things, ok := h.identity(cl)
	if ok {
		for _, th := range things {
			if strings.HasPrefix(topic, "$aws/things/"+th+"/") {
				return true
			}
		}
	}
	h.log.Info("MQTT topic refused", "client", cl.ID, "topic", topic, "write", write)
	return false
}
