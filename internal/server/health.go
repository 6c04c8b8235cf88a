package server

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// healthTimeout bounds /readyz's store check.
const healthTimeout = 2 * time.Second

// health adds the checks of load balancers and orchestrators to mux:
// /healthz answers 200 while the process serves HTTP at all; /readyz
// answers 200 only while the server is started (its listeners up, not
// shutting down) and its store answers a query, and 503 saying why
// otherwise.
func (s *Server) health(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !s.serving.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: the server is not serving (starting or shutting down)")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		if err := s.store.Ping(ctx); err != nil {
			s.log.Warn("readyz: store check failed", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: the store does not answer")
			return
		}
		fmt.Fprintln(w, "ok")
	})
}
