package tokenwire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// RequestIDKey is the trailer every tokenwire response carries (the client's own id when
// it sends one in the request metadata under the same key).
const RequestIDKey = "x-request-id"

// FieldViolation is one entry of a google.rpc.BadRequest: the request field at fault
// ("sampling.top_p", "ids[2]", ...) and why.
type FieldViolation struct {
	Field       string
	Description string
}

// Error is a failed tokenwire call: the gRPC status with its details decoded.
type Error struct {
	// Code is the gRPC status code (see PROTOCOL.md's status table).
	Code codes.Code
	// Message is the server's readable message.
	Message string
	// RequestID is the x-request-id trailer; quote it in bug reports (the server log
	// holds the traceback of an INTERNAL under it).
	RequestID string
	// FieldViolations come from a google.rpc.BadRequest detail (INVALID_ARGUMENT).
	FieldViolations []FieldViolation
	// RetryDelay comes from a google.rpc.RetryInfo detail (RESOURCE_EXHAUSTED); 0 if none.
	RetryDelay time.Duration

	st *status.Status
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tokenwire: %s: %s", e.Code, e.Message)
	for _, v := range e.FieldViolations {
		fmt.Fprintf(&b, " [%s: %s]", v.Field, v.Description)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (request id %s)", e.RequestID)
	}
	return b.String()
}

// GRPCStatus lets status.FromError / status.Code see through an *Error.
func (e *Error) GRPCStatus() *status.Status { return e.st }

// Field returns the description of the violation of field, and whether there is one.
func (e *Error) Field(field string) (string, bool) {
	for _, v := range e.FieldViolations {
		if v.Field == field {
			return v.Description, true
		}
	}
	return "", false
}

// AsError turns any error from a gRPC call into an *Error (nil for nil). An error that
// is already an *Error, or wraps one, is returned as is; a non-gRPC error becomes
// codes.Unknown.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var te *Error
	if errors.As(err, &te) {
		return te
	}
	return newError(err, nil)
}

func newError(err error, trailer metadata.MD) *Error {
	st := status.Convert(err)
	out := &Error{Code: st.Code(), Message: st.Message(), st: st}
	if ids := trailer.Get(RequestIDKey); len(ids) > 0 {
		out.RequestID = ids[0]
	}
	for _, d := range st.Details() {
		switch detail := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range detail.GetFieldViolations() {
				out.FieldViolations = append(out.FieldViolations, FieldViolation{v.GetField(), v.GetDescription()})
			}
		case *errdetails.RetryInfo:
			out.RetryDelay = detail.GetRetryDelay().AsDuration()
		}
	}
	return out
}

// unaryErrors converts a failed unary call's error to *Error, with the request id
// taken from the trailer (captured even when the caller asked for it too).
func unaryErrors(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var trailer metadata.MD
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Trailer(&trailer))...)
	if err != nil {
		return newError(err, trailer)
	}
	return nil
}

// streamErrors wraps streams so that a failed RecvMsg (other than io.EOF) returns *Error.
func streamErrors(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, newError(err, nil)
	}
	return &errorStream{ClientStream: s}, nil
}

type errorStream struct{ grpc.ClientStream }

func (s *errorStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil || err == io.EOF {
		return err
	}
	// After a failed RecvMsg the trailer is final, so reading it does not block.
	return newError(err, s.ClientStream.Trailer())
}
