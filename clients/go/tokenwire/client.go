// Package tokenwire is a small typed layer over the generated tokenwire.v1 stubs
// (package tokenwirev1): one connection with every service's stub, streaming generation
// as an iterator or a callback, and errors that carry the status code, the request id
// and the google.rpc.BadRequest field violations.
//
//	c, err := tokenwire.Dial("127.0.0.1:50051")
//	if err != nil { ... }
//	defer c.Close()
//	for msg, err := range c.Stream(ctx, &tokenwirev1.GenerateRequest{Model: "tiny-llama", Prompt: "Once"}) {
//		if err != nil { ... }
//		fmt.Print(msg.GetText())
//	}
//
// Every RPC made through the Client's stubs (Models, Understanding, Multimodal,
// Generation) returns a *Error on failure; status.Code(err) still works on it.
package tokenwire

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tokenwire/tokenwire/clients/go/tokenwirev1"
)

// DefaultTarget is where `tokenwire serve` listens by default.
const DefaultTarget = "127.0.0.1:50051"

// MaxMessageBytes matches the server's default max_receive_message_bytes (64 MiB), so
// large images and embedding batches pass in both directions.
const MaxMessageBytes = 64 << 20

// Client holds one gRPC connection and a stub per tokenwire service.
type Client struct {
	conn          *grpc.ClientConn
	Generation    tokenwirev1.GenerationClient
	Understanding tokenwirev1.UnderstandingClient
	Multimodal    tokenwirev1.MultimodalClient
	Models        tokenwirev1.ModelsClient
	Health        healthpb.HealthClient
}

// Dial connects lazily to target ("host:port"). Without options it uses a plaintext
// connection and 64 MiB message limits; options given are applied after those defaults.
// Errors of every call are converted to *Error by interceptors installed here.
func Dial(target string, opts ...grpc.DialOption) (*Client, error) {
	all := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMessageBytes),
			grpc.MaxCallSendMsgSize(MaxMessageBytes),
		),
		grpc.WithChainUnaryInterceptor(unaryErrors),
		grpc.WithChainStreamInterceptor(streamErrors),
	}, opts...)
	conn, err := grpc.NewClient(target, all...)
	if err != nil {
		return nil, fmt.Errorf("tokenwire: dial %s: %w", target, err)
	}
	return NewClient(conn), nil
}

// NewClient wraps an existing connection (no error conversion unless the connection was
// made with the interceptors of Dial).
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{
		conn:          conn,
		Generation:    tokenwirev1.NewGenerationClient(conn),
		Understanding: tokenwirev1.NewUnderstandingClient(conn),
		Multimodal:    tokenwirev1.NewMultimodalClient(conn),
		Models:        tokenwirev1.NewModelsClient(conn),
		Health:        healthpb.NewHealthClient(conn),
	}
}

// Conn is the underlying connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Serving reports whether the health service says service ("" = the whole server,
// or e.g. "tokenwire.v1.Generation") is SERVING.
func (c *Client) Serving(ctx context.Context, service string) bool {
	reply, err := c.Health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	return err == nil && reply.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

// WaitServing polls health until service is SERVING or ctx ends. The server opens its
// port before its models are loaded; "" turns SERVING once every model has settled.
func (c *Client) WaitServing(ctx context.Context, service string) error {
	for {
		check, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok := c.Serving(check, service)
		cancel()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tokenwire: health of %q never turned SERVING: %w", service, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Generate is Generation.Generate (unary).
func (c *Client) Generate(ctx context.Context, req *tokenwirev1.GenerateRequest, opts ...grpc.CallOption) (*tokenwirev1.GenerateResponse, error) {
	return c.Generation.Generate(ctx, req, opts...)
}
