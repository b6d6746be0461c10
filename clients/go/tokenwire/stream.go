package tokenwire

import (
	"context"
	"errors"
	"io"
	"iter"

	"google.golang.org/grpc"

	"github.com/tokenwire/tokenwire/clients/go/tokenwirev1"
)

// ErrStop, returned by a GenerateStream callback, ends the stream early without error:
// the call is cancelled and the server stops generating at its next step.
var ErrStop = errors.New("tokenwire: stop streaming")

type deltaStream = grpc.ServerStreamingClient[tokenwirev1.GenerateStreamResponse]

// Stream runs Generation.GenerateStream and yields its messages (deltas of one sequence
// each; see GenerateStreamResponse). Breaking out of the loop cancels the call. A
// failure is yielded once, as a *Error, as the last element.
func (c *Client) Stream(ctx context.Context, req *tokenwirev1.GenerateRequest, opts ...grpc.CallOption) iter.Seq2[*tokenwirev1.GenerateStreamResponse, error] {
	return deltas(ctx, func(ctx context.Context) (deltaStream, error) {
		return c.Generation.GenerateStream(ctx, req, opts...)
	})
}

// ChatStream is Stream for Multimodal.MultimodalChatStream.
func (c *Client) ChatStream(ctx context.Context, req *tokenwirev1.MultimodalChatRequest, opts ...grpc.CallOption) iter.Seq2[*tokenwirev1.GenerateStreamResponse, error] {
	return deltas(ctx, func(ctx context.Context) (deltaStream, error) {
		return c.Multimodal.MultimodalChatStream(ctx, req, opts...)
	})
}

// GenerateStream runs Generation.GenerateStream, calls fn with each message and returns
// the stream folded into the GenerateResponse that Generate would have returned. If fn
// returns ErrStop the call is cancelled and the partial result is returned with a nil
// error; any other error from fn cancels the call and is returned.
func (c *Client) GenerateStream(ctx context.Context, req *tokenwirev1.GenerateRequest,
	fn func(*tokenwirev1.GenerateStreamResponse) error, opts ...grpc.CallOption) (*tokenwirev1.GenerateResponse, error) {
	acc := NewAccumulator()
	for msg, err := range c.Stream(ctx, req, opts...) {
		if err != nil {
			return acc.Response(), err
		}
		acc.Add(msg)
		if fn == nil {
			continue
		}
		if ferr := fn(msg); ferr != nil {
			if errors.Is(ferr, ErrStop) {
				return acc.Response(), nil
			}
			return acc.Response(), ferr
		}
	}
	return acc.Response(), nil
}

func deltas(ctx context.Context, open func(context.Context) (deltaStream, error)) iter.Seq2[*tokenwirev1.GenerateStreamResponse, error] {
	return func(yield func(*tokenwirev1.GenerateStreamResponse, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // an early break cancels the call; the server stops at its next step
		stream, err := open(ctx)
		if err != nil {
			yield(nil, AsError(err))
			return
		}
		for {
			msg, err := stream.Recv()
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(nil, AsError(err))
				return
			}
			if !yield(msg, nil) {
				return
			}
		}
	}
}

// Accumulator folds GenerateStreamResponse deltas into a GenerateResponse: text and
// token ids concatenated per sequence index, finish reason, matched stop, scores and
// logprobs from each sequence's last message, usage / seed / model from the stream.
type Accumulator struct {
	resp *tokenwirev1.GenerateResponse
}

// NewAccumulator returns an empty Accumulator.
func NewAccumulator() *Accumulator {
	return &Accumulator{resp: &tokenwirev1.GenerateResponse{}}
}

// Add folds one message in.
func (a *Accumulator) Add(m *tokenwirev1.GenerateStreamResponse) {
	for int(m.GetIndex()) >= len(a.resp.Sequences) {
		a.resp.Sequences = append(a.resp.Sequences, &tokenwirev1.Sequence{})
	}
	s := a.resp.Sequences[m.GetIndex()]
	s.Text += m.GetText()
	s.TokenIds = append(s.TokenIds, m.GetTokenIds()...)
	s.Logprobs = append(s.Logprobs, m.GetLogprobs()...)
	if m.GetFinishReason() != tokenwirev1.FinishReason_FINISH_REASON_UNSPECIFIED {
		s.FinishReason = m.GetFinishReason()
		s.MatchedStop = m.GetMatchedStop()
	}
	if m.CumulativeLogprob != nil {
		s.CumulativeLogprob = m.CumulativeLogprob
	}
	if m.Score != nil {
		s.Score = m.Score
	}
	if m.Usage != nil {
		a.resp.Usage = m.Usage
	}
	if m.Seed != nil {
		a.resp.Seed = m.Seed
	}
	if m.GetModel() != "" {
		a.resp.Model = m.GetModel()
	}
}

// Response is what was folded so far (shared, not a copy).
func (a *Accumulator) Response() *tokenwirev1.GenerateResponse { return a.resp }
