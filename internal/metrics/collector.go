package metrics

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/warrentunnel/warren/internal/relay"
)

// directions are the values of the direction label, in the order of the
// relay's and the limiter's per-direction arrays.
func directions() [2]string { return [2]string{"source_to_destination", "destination_to_source"} }

// modes are the values of the mode label, in the order of relay.Stats.Peers.
func modes() [2]string { return [2]string{"source", "destination"} }

// collector reads the sources' counters at scrape time.
type collector struct {
	cfg Config

	tunnels, peers, connections                 *prometheus.Desc
	frames, bytes, refused, handshakes, dropped *prometheus.Desc
	disconnects                                 *prometheus.Desc
	limit, paced, pacedFor, acctBytes           *prometheus.Desc
	links, linkBytes                            *prometheus.Desc
}

func newCollector(cfg Config) *collector {
	d := prometheus.NewDesc
	return &collector{
		cfg:         cfg,
		tunnels:     d("warren_tunnels", "Tunnels in the store by state (open: not closed and within its lifetime).", []string{"state"}, nil),
		peers:       d("warren_relay_peers", "Local proxies connected to the relay, by mode.", []string{"mode"}, nil),
		connections: d("warren_relay_tcp_connections", "TCP connections (streams or connections of a stream) the relay's tunnels carry; followed only under --max-connections-per-tunnel.", nil, nil),
		frames:      d("warren_relay_forwarded_frames_total", "Tunnel frames the relay forwarded, by direction.", []string{"direction"}, nil),
		bytes:       d("warren_relay_forwarded_bytes_total", "Bytes of tunnel frames (payload and framing) the relay forwarded, by direction.", []string{"direction"}, nil),
		refused:     d("warren_relay_refused_frames_total", "Tunnel frames the relay did not forward: for a peer that is not connected (no_peer), or a connection start past the tunnel's limit (connection_limit), answered with a reset.", []string{"reason"}, nil),
		dropped:     d("warren_relay_dropped_bytes_total", "Bytes of the frames refused for a peer that is not connected.", nil, nil),
		handshakes:  d("warren_relay_handshakes_total", "Local proxies' WebSocket handshakes by result.", []string{"result"}, nil),
		disconnects: d("warren_relay_disconnects_total", "Local proxies' connections the relay saw end, by reason.", []string{"reason"}, nil),
		limit:       d("warren_bandwidth_limit_bytes_per_second", "The bandwidth limit in force for an account with live peers (0: unlimited), in each direction.", []string{"account"}, nil),
		acctBytes:   d("warren_bandwidth_bytes_total", "Tunnel DATA bytes of an account through its pacer, by direction, since its first live peer.", []string{"account", "direction"}, nil),
		paced:       d("warren_bandwidth_pacing_waits_total", "Frames of an account that waited for its bandwidth limit, by direction.", []string{"account", "direction"}, nil),
		links:       d("warren_node_links", "Links up to the other nodes of the cluster.", nil, nil),
		linkBytes:   d("warren_node_link_bytes_total", "Bytes of messages over the link to another node (tunnel frames, credit, pings), by node and direction (sent, received), since the link came up.", []string{"node", "direction"}, nil),
		pacedFor:    d("warren_bandwidth_pacing_wait_seconds_total", "Time frames of an account waited for its bandwidth limit, by direction.", []string{"account", "direction"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.tunnels, c.peers, c.connections, c.frames, c.bytes, c.refused, c.dropped,
		c.handshakes, c.disconnects, c.limit, c.acctBytes, c.paced, c.pacedFor, c.links, c.linkBytes} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if c.cfg.Store != nil {
		c.collectStore(ch)
	}
	if c.cfg.Relay != nil {
		c.collectRelay(ch, c.cfg.Relay.Stats())
	}
	if c.cfg.Bandwidth != nil {
		c.collectBandwidth(ch)
	}
	if c.cfg.Links != nil {
		links := c.cfg.Links.Stats()
		ch <- prometheus.MustNewConstMetric(c.links, prometheus.GaugeValue, float64(len(links)))
		for _, l := range links {
			ch <- prometheus.MustNewConstMetric(c.linkBytes, prometheus.CounterValue, float64(l.Sent), l.Node, "sent")
			ch <- prometheus.MustNewConstMetric(c.linkBytes, prometheus.CounterValue, float64(l.Received), l.Node, "received")
		}
	}
}

func (c *collector) collectStore(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	open, closed, err := c.cfg.Store.TunnelCounts(ctx, time.Now())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.tunnels, fmt.Errorf("warren_tunnels: %w", err))
		return
	}
	ch <- prometheus.MustNewConstMetric(c.tunnels, prometheus.GaugeValue, float64(open), "open")
	ch <- prometheus.MustNewConstMetric(c.tunnels, prometheus.GaugeValue, float64(closed), "closed")
}

func (c *collector) collectRelay(ch chan<- prometheus.Metric, s relay.Stats) {
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	for i, mode := range modes() {
		ch <- prometheus.MustNewConstMetric(c.peers, gauge, float64(s.Peers[i]), mode)
	}
	if s.ConnectionsCounted {
		ch <- prometheus.MustNewConstMetric(c.connections, gauge, float64(s.Connections))
	}
	for i, dir := range directions() {
		ch <- prometheus.MustNewConstMetric(c.frames, counter, float64(s.ForwardedFrames[i]), dir)
		ch <- prometheus.MustNewConstMetric(c.bytes, counter, float64(s.ForwardedBytes[i]), dir)
	}
	ch <- prometheus.MustNewConstMetric(c.refused, counter, float64(s.DroppedFrames), "no_peer")
	ch <- prometheus.MustNewConstMetric(c.refused, counter, float64(s.RefusedStarts), "connection_limit")
	ch <- prometheus.MustNewConstMetric(c.dropped, counter, float64(s.DroppedBytes))
	for i, result := range relay.HandshakeResults() {
		ch <- prometheus.MustNewConstMetric(c.handshakes, counter, float64(s.Handshakes[i]), result)
	}
	for i, reason := range relay.DisconnectReasons() {
		ch <- prometheus.MustNewConstMetric(c.disconnects, counter, float64(s.Disconnects[i]), reason)
	}
}

func (c *collector) collectBandwidth(ch chan<- prometheus.Metric) {
	for _, a := range c.cfg.Bandwidth.Stats() {
		ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(a.Limit), a.ID)
		for i, dir := range directions() {
			ch <- prometheus.MustNewConstMetric(c.acctBytes, prometheus.CounterValue, float64(a.Bytes[i]), a.ID, dir)
			ch <- prometheus.MustNewConstMetric(c.paced, prometheus.CounterValue, float64(a.Waits[i]), a.ID, dir)
			ch <- prometheus.MustNewConstMetric(c.pacedFor, prometheus.CounterValue, a.Waited[i].Seconds(), a.ID, dir)
		}
	}
}
