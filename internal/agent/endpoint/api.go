package endpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/sluice-dev/sluice/internal/cni"
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// Handler is the endpoint API on the agent's socket (internal/cni/agent.go
// documents it): HTTP in and out, the registration protocol in Registry.
func (r *Registry) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/endpoints/{id}", func(w http.ResponseWriter, req *http.Request) {
		id := req.PathValue("id")
		switch req.Method {
		case http.MethodPut:
			var ep cni.Endpoint
			dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxBody))
			if err := dec.Decode(&ep); err != nil {
				reply(w, nil, errorf(Invalid, "decode endpoint: %v", err))
				return
			}
			st, err := r.Register(req.Context(), id, ep)
			reply(w, st, err)
		case http.MethodGet:
			st, err := r.Status(id)
			reply(w, st, err)
		case http.MethodDelete:
			if err := validContainerID(id); err != nil {
				reply(w, nil, err)
				return
			}
			r.Unregister(id)
			reply(w, struct{}{}, nil)
		default:
			methodNotAllowed(w, req)
		}
	})
	mux.HandleFunc("/v1/endpoints", func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet {
			methodNotAllowed(w, req)
			return
		}
		reply(w, r.List(), nil)
	})
	mux.HandleFunc("/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		if msg := r.NotReady(); msg != "" {
			replyStatus(w, http.StatusServiceUnavailable, msg)
			return
		}
		reply(w, struct{}{}, nil)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		replyStatus(w, http.StatusNotFound, "no such path "+req.URL.Path)
	})
	return mux
}

// httpStatus is the status the API answers a refusal of kind k with.
func httpStatus(k Kind) int {
	switch k {
	case Invalid:
		return http.StatusBadRequest
	case NotFound:
		return http.StatusNotFound
	case Conflict:
		return http.StatusConflict
	case Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func methodNotAllowed(w http.ResponseWriter, req *http.Request) {
	replyStatus(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", req.Method, req.URL.Path))
}

// reply answers body, or err with its kind's status (500 for any other
// error) and an AgentErrorBody.
func reply(w http.ResponseWriter, body any, err error) {
	if err != nil {
		status := http.StatusInternalServerError
		var e *Error
		if errors.As(err, &e) {
			status = httpStatus(e.Kind)
		}
		replyStatus(w, status, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

func replyStatus(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(cni.AgentErrorBody{Message: msg})
}
