package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// Error codes, as AWS spells them: the SDKs turn them into typed errors.
const (
	codeInvalidRequest     = "InvalidRequestException"
	codeNotFound           = "ResourceNotFoundException"
	codeExists             = "ResourceAlreadyExistsException"
	codeLimitExceeded      = "LimitExceededException"
	codeThrottling         = "ThrottlingException"
	codeVersionConflict    = "VersionConflictException"
	codeSerialization      = "SerializationException"
	codeUnknownOperation   = "UnknownOperationException"
	codeMissingAuth        = "MissingAuthenticationTokenException"
	codeIncompleteSig      = "IncompleteSignatureException"
	codeInvalidSig         = "InvalidSignatureException"
	codeUnrecognizedClient = "UnrecognizedClientException"
	codeTooLarge           = "RequestEntityTooLargeException"
	codeInternal           = "InternalFailureException"
	codeValidation         = "ValidationException"
	codeAccessDenied       = "AccessDeniedException"
)

// apiError is an error reported to the client in AWS's error format. status
// is the REST JSON status from the iot model; AWS JSON 1.1 reports client
// errors other than authentication ones as 400 (see jsonStatus).
type apiError struct {
	status  int
	code    string
	message string
	// Members of ResourceAlreadyExistsException.
	resourceID, resourceARN string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func newError(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func errInvalid(format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, codeInvalidRequest, format, args...)
}

// errValidation is bad input to one of Warren's own services, which name it
// as newer AWS services do.
func errValidation(format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, codeValidation, format, args...)
}

func errNotFound(format string, args ...any) *apiError {
	return newError(http.StatusNotFound, codeNotFound, format, args...)
}

func errSerialization(format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, codeSerialization, format, args...)
}

func errUnknownOperation(format string, args ...any) *apiError {
	return newError(http.StatusNotFound, codeUnknownOperation, format, args...)
}

func errTooLarge() *apiError {
	return newError(http.StatusRequestEntityTooLarge, codeTooLarge, "the request body is larger than %d bytes", MaxBodyBytes)
}

// errThrottled is a request beyond its account's rate. Both protocols
// answer 429: the SDKs retry ThrottlingException by its code, and HTTP
// clients and proxies know the status. (The iot model gives the shape 400;
// no SDK depends on that, they match the code.)
func errThrottled(rate float64, burst int) *apiError {
	return newError(http.StatusTooManyRequests, codeThrottling,
		"rate exceeded: this server allows each account %g API requests per second, in bursts of up to %d; retry after a pause", rate, burst)
}

// errAuth is an authentication failure: always 403, like AWS.
func errAuth(code, format string, args ...any) *apiError {
	return newError(http.StatusForbidden, code, format, args...)
}

// toAPIError maps an operation's error to what the client sees. Errors that
// are neither API errors nor domain sentinels are internal: the client gets
// a generic 500 and the log gets the detail.
func toAPIError(err error) (e *apiError, internal bool) {
	if e, ok := errorsAsAPI(err); ok {
		return e, false
	}
	switch {
	case errors.Is(err, tunnel.ErrInvalid):
		return errInvalid("%s", strings.TrimPrefix(err.Error(), tunnel.ErrInvalid.Error()+": ")), false
	case errors.Is(err, tunnel.ErrNotFound):
		return errNotFound("%s", err.Error()), false
	case errors.Is(err, tunnel.ErrLimitExceeded):
		return newError(http.StatusBadRequest, codeLimitExceeded, "%s", err.Error()), false
	}
	return newError(http.StatusInternalServerError, codeInternal, "internal server error; the server's log has the details"), true
}

// jsonStatus is the HTTP status of an error under AWS JSON 1.1, whose model
// gives its errors no status: client errors are 400 there.
func jsonStatus(e *apiError) int {
	switch e.status {
	case http.StatusNotFound, http.StatusConflict:
		return http.StatusBadRequest
	}
	return e.status
}

// tunnelAPIError is e as the IoT Secure Tunneling API names it. That API's
// model defines no error for bad input, and the service answers what AWS's
// JSON services answer for a request outside the model's constraints:
// ValidationException, where the iot REST API (which shares the helpers
// that make these errors) says InvalidRequestException.
func tunnelAPIError(e *apiError) *apiError {
	if e.code != codeInvalidRequest {
		return e
	}
	v := *e
	v.code = codeValidation
	return &v
}

// writeError writes err in the format both protocols' SDKs parse: the code in
// the x-amzn-ErrorType header and as __type in the body, the text as message.
// It returns the status and the code written.
func (a *API) writeError(w http.ResponseWriter, c *call, err error) (int, string) {
	e, internal := toAPIError(err)
	status := e.status
	if c.proto == protoJSON {
		status = jsonStatus(e)
		e = tunnelAPIError(e)
	}
	attrs := []slog.Attr{slog.String("op", c.op), slog.String("code", e.code), slog.String("account", c.account.ID)}
	switch {
	case internal:
		a.log.LogAttrs(c.r.Context(), slog.LevelError, "api request failed", append(attrs, slog.String("err", err.Error()))...)
	case status == http.StatusForbidden:
		a.log.LogAttrs(c.r.Context(), slog.LevelInfo, "api request refused", append(attrs, slog.String("reason", e.message))...)
	}
	body := map[string]string{"__type": e.code, "message": e.message}
	if e.resourceID != "" {
		body["resourceId"] = e.resourceID
	}
	if e.resourceARN != "" {
		body["resourceArn"] = e.resourceARN
	}
	w.Header().Set("x-amzn-ErrorType", e.code)
	a.writeJSON(w, c.proto, status, body)
	return status, e.code
}

// writeJSON writes v as the protocol's JSON document.
func (a *API) writeJSON(w http.ResponseWriter, p protocol, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own response types get here; they always marshal.
		a.log.Error("encode api response", slog.String("err", err.Error()))
		b, status = []byte(`{"__type":"InternalFailureException","message":"encoding the response failed"}`), http.StatusInternalServerError
	}
	ct := "application/json"
	if p != protoREST {
		ct = "application/x-amz-json-1.1"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// errorsAsAPI reports whether err is, or wraps, an *apiError.
func errorsAsAPI(err error) (*apiError, bool) {
	var e *apiError
	ok := errors.As(err, &e)
	return e, ok
}
