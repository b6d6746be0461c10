package tokenwire_test

// These tests run against a real `tokenwire serve --demo --port 0` (see
// internal/testserver) and call every RPC of the protocol through the Go client.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokenwire/tokenwire/clients/go/internal/testserver"
	"github.com/tokenwire/tokenwire/clients/go/tokenwire"
	pb "github.com/tokenwire/tokenwire/clients/go/tokenwirev1"
)

var client *tokenwire.Client

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	srv, err := testserver.Start(3 * time.Minute)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start tokenwire serve:", err)
		return 1
	}
	defer srv.Stop()
	client, err = tokenwire.Dial(srv.Target)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := client.WaitServing(ctx, ""); err != nil {
		fmt.Fprintln(os.Stderr, err, "\n", srv.Output())
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, "server output:\n"+srv.Output())
	}
	return code
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ok fails the test unless the call succeeded; it returns true so call sites read
// `if ok(t, "Rpc", err) { …checks… }`.
func ok(t *testing.T, rpc string, err error) bool {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", rpc, err)
	}
	return true
}

func greedy(prompt string, maxNew uint32) *pb.GenerateRequest {
	return &pb.GenerateRequest{
		Model:    "tiny-llama",
		Prompt:   prompt,
		Method:   pb.DecodingMethod_DECODING_METHOD_GREEDY,
		Stopping: &pb.StoppingParams{MaxNewTokens: &maxNew, IgnoreEos: true},
	}
}

func testPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 32, 32))
	for y := 0; y < 32; y++ {
		for x := 0; x < 32; x++ {
			img.Set(x, y, color.RGBA{uint8(8 * x), uint8(8 * y), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestHealth(t *testing.T) {
	for _, service := range []string{"", "tokenwire.v1.Models", "tokenwire.v1.Generation"} {
		if !client.Serving(ctxT(t), service) {
			t.Errorf("health of %q is not SERVING", service)
		}
	}
}

func TestModels(t *testing.T) {
	ctx := ctxT(t)
	list, err := client.Models.ListModels(ctx, &pb.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range list.GetModels() {
		names = append(names, m.GetName())
	}
	want := []string{"tiny-bert", "tiny-bert-classifier", "tiny-bert-embed", "tiny-bert-ner", "tiny-bert-qa",
		"tiny-bert-reranker", "tiny-bert-sentiment", "tiny-clip", "tiny-gpt2", "tiny-llama", "tiny-llava"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("ListModels = %v, want %v (sorted by name)", names, want)
	}

	gen, err := client.Models.ListModels(ctx, &pb.ListModelsRequest{Task: pb.Task_TASK_GENERATE})
	if err != nil || len(gen.GetModels()) != 2 {
		t.Errorf("ListModels(TASK_GENERATE) = %v, %v; want tiny-gpt2 and tiny-llama", gen, err)
	}

	info, err := client.Models.GetModelInfo(ctx, &pb.GetModelInfoRequest{Model: "tiny-llama"})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetState() != pb.ModelState_MODEL_STATE_READY || len(info.GetTasks()) != 1 ||
		info.GetTasks()[0] != pb.Task_TASK_GENERATE || info.GetVocabSize() == 0 || info.GetMaxNewTokens() == 0 {
		t.Errorf("GetModelInfo(tiny-llama) = %v", info)
	}

	text := "naïve café"
	tok, err := client.Models.Tokenize(ctx, &pb.TokenizeRequest{Model: "tiny-gpt2", Text: text})
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.GetIds()) == 0 || len(tok.GetIds()) != len(tok.GetTokens()) || len(tok.GetIds()) != len(tok.GetOffsets()) {
		t.Fatalf("Tokenize = %v", tok)
	}
	runes := []rune(text)
	if last := tok.GetOffsets()[len(tok.GetOffsets())-1]; int(last.GetEnd()) != len(runes) {
		t.Errorf("last offset %v does not end at %d code points", last, len(runes))
	}
	detok, err := client.Models.Detokenize(ctx, &pb.DetokenizeRequest{Model: "tiny-gpt2", Ids: tok.GetIds()})
	if err != nil {
		t.Fatal(err)
	}
	if detok.GetText() != text {
		t.Errorf("Detokenize(Tokenize(%q)) = %q", text, detok.GetText())
	}
}

func TestRequestIDTrailerOnSuccess(t *testing.T) {
	var trailer metadata.MD
	_, err := client.Models.ListModels(ctxT(t), &pb.ListModelsRequest{}, grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	if ids := trailer.Get(tokenwire.RequestIDKey); len(ids) != 1 || ids[0] == "" {
		t.Errorf("trailer %v has no %s", trailer, tokenwire.RequestIDKey)
	}
	// The client's own id comes back.
	ctx := metadata.AppendToOutgoingContext(ctxT(t), tokenwire.RequestIDKey, "go-client-test-1")
	if _, err := client.Models.ListModels(ctx, &pb.ListModelsRequest{}, grpc.Trailer(&trailer)); err != nil {
		t.Fatal(err)
	}
	if got := trailer.Get(tokenwire.RequestIDKey); len(got) != 1 || got[0] != "go-client-test-1" {
		t.Errorf("request id trailer = %v, want the client's own", got)
	}
}

func TestGenerate(t *testing.T) {
	resp, err := client.Generate(ctxT(t), greedy("Once upon a time", 16))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetSequences()) != 1 {
		t.Fatalf("sequences = %d, want 1", len(resp.GetSequences()))
	}
	seq := resp.GetSequences()[0]
	if len(seq.GetTokenIds()) != 16 || seq.GetFinishReason() != pb.FinishReason_FINISH_REASON_LENGTH {
		t.Errorf("sequence = %v, want 16 tokens ending with LENGTH", seq)
	}
	if resp.GetUsage().GetCompletionTokens() != 16 || resp.GetUsage().GetPromptTokens() == 0 || resp.GetModel() != "tiny-llama" {
		t.Errorf("usage/model = %v / %q", resp.GetUsage(), resp.GetModel())
	}

	seed := uint64(7)
	sample := greedy("The weather", 8)
	sample.Method = pb.DecodingMethod_DECODING_METHOD_SAMPLE
	sample.Sampling = &pb.SamplingParams{Seed: &seed}
	sample.NumReturnSequences = 2
	a, err := client.Generate(ctxT(t), sample)
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.Generate(ctxT(t), sample)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.GetSequences()) != 2 || a.GetSeed() != 7 {
		t.Errorf("sampled response = %v", a)
	}
	if fmt.Sprint(a.GetSequences()[0].GetTokenIds()) != fmt.Sprint(b.GetSequences()[0].GetTokenIds()) {
		t.Errorf("same seed, different tokens: %v vs %v", a.GetSequences()[0].GetTokenIds(), b.GetSequences()[0].GetTokenIds())
	}
}

// A stream read to the end folds into exactly what Generate returns.
func TestGenerateStreamReadToEnd(t *testing.T) {
	req := greedy("It was a dark and stormy night", 24)
	want, err := client.Generate(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	acc := tokenwire.NewAccumulator()
	var messages int
	var last *pb.GenerateStreamResponse
	for msg, err := range client.Stream(ctxT(t), req) {
		if err != nil {
			t.Fatal(err)
		}
		if messages == 0 && msg.GetModel() != "tiny-llama" {
			t.Errorf("first message has model %q", msg.GetModel())
		}
		messages++
		acc.Add(msg)
		last = msg
	}
	got := acc.Response()
	if messages < 2 {
		t.Errorf("%d messages; a 24-token generation should stream in several", messages)
	}
	if last.GetUsage().GetCompletionTokens() != 24 {
		t.Errorf("last message usage = %v", last.GetUsage())
	}
	if len(got.GetSequences()) != 1 ||
		got.GetSequences()[0].GetText() != want.GetSequences()[0].GetText() ||
		fmt.Sprint(got.GetSequences()[0].GetTokenIds()) != fmt.Sprint(want.GetSequences()[0].GetTokenIds()) ||
		got.GetSequences()[0].GetFinishReason() != pb.FinishReason_FINISH_REASON_LENGTH {
		t.Errorf("stream folded to %v, Generate gave %v", got.GetSequences(), want.GetSequences())
	}

	// The callback form, stopped early with ErrStop, returns the partial result.
	var seen int
	partial, err := client.GenerateStream(ctxT(t), greedy("Early stop", 500), func(*pb.GenerateStreamResponse) error {
		seen++
		if seen == 3 {
			return tokenwire.ErrStop
		}
		return nil
	})
	if err != nil || seen != 3 || len(partial.GetSequences()) != 1 || len(partial.GetSequences()[0].GetTokenIds()) == 0 {
		t.Errorf("ErrStop: err=%v seen=%d partial=%v", err, seen, partial)
	}
}

// Cancelling the context mid-stream ends the call with CANCELLED and the server stays
// healthy (it stops generating at its next step).
func TestCancelledStream(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	var received int
	var final error
	start := time.Now()
	for msg, err := range client.Stream(ctx, greedy("A very long story", 2000)) {
		if err != nil {
			final = err
			break
		}
		if len(msg.GetTokenIds()) > 0 {
			received++
		}
		if received == 2 {
			cancel()
		}
	}
	if received < 2 {
		t.Fatalf("received %d token messages before the end", received)
	}
	e := tokenwire.AsError(final)
	if e == nil || e.Code != codes.Canceled {
		t.Fatalf("after cancel: err = %v, want CANCELLED", final)
	}
	if status.Code(final) != codes.Canceled {
		t.Errorf("status.Code does not see through *Error: %v", status.Code(final))
	}
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Errorf("cancelled stream took %s", elapsed)
	}
	if _, err := client.Generate(ctxT(t), greedy("still alive?", 4)); err != nil {
		t.Errorf("Generate after a cancelled stream: %v", err)
	}
}

func TestInvalidArgumentCarriesFieldViolation(t *testing.T) {
	topP := float32(1.5)
	req := greedy("x", 4)
	req.Method = pb.DecodingMethod_DECODING_METHOD_SAMPLE
	req.Sampling = &pb.SamplingParams{TopP: &topP}

	_, err := client.Generate(ctxT(t), req)
	var e *tokenwire.Error
	if !errors.As(err, &e) {
		t.Fatalf("Generate(top_p=1.5) err = %v (%T), want *tokenwire.Error", err, err)
	}
	if e.Code != codes.InvalidArgument || status.Code(err) != codes.InvalidArgument {
		t.Errorf("code = %v, want INVALID_ARGUMENT", e.Code)
	}
	desc, ok := e.Field("sampling.top_p")
	if !ok || desc == "" {
		t.Errorf("no violation of sampling.top_p in %+v", e.FieldViolations)
	}
	if e.RequestID == "" {
		t.Errorf("no request id on %v", e)
	}
	t.Logf("decoded: %v", e)

	// The same request streamed fails the same way, as the stream's only element.
	var streamErr error
	for _, err := range client.Stream(ctxT(t), req) {
		streamErr = err
	}
	if se := tokenwire.AsError(streamErr); se == nil || se.Code != codes.InvalidArgument {
		t.Fatalf("GenerateStream(top_p=1.5) err = %v", streamErr)
	} else if _, ok := se.Field("sampling.top_p"); !ok || se.RequestID == "" {
		t.Errorf("stream error lacks the violation or request id: %v", se)
	}

	// Other validation failures name their field too.
	_, err = client.Models.Detokenize(ctxT(t), &pb.DetokenizeRequest{Model: "tiny-gpt2", Ids: []uint32{1, 2, 1 << 30}})
	if e := tokenwire.AsError(err); e == nil || e.Code != codes.InvalidArgument {
		t.Errorf("Detokenize(out-of-range id) err = %v", err)
	} else if _, ok := e.Field("ids[2]"); !ok {
		t.Errorf("Detokenize violations = %+v, want ids[2]", e.FieldViolations)
	}
}

func TestStatusCodes(t *testing.T) {
	_, err := client.Generate(ctxT(t), &pb.GenerateRequest{Model: "no-such-model", Prompt: "x"})
	if e := tokenwire.AsError(err); e == nil || e.Code != codes.NotFound || e.RequestID == "" {
		t.Errorf("unknown model: %v", err)
	}
	_, err = client.Generate(ctxT(t), &pb.GenerateRequest{Model: "tiny-bert", Prompt: "x"})
	if e := tokenwire.AsError(err); e == nil || e.Code != codes.FailedPrecondition {
		t.Errorf("model without TASK_GENERATE: %v", err)
	}
}

// Structured output (docs/structured-output.md): the random-weight demo models produce
// valid output only because of the mask, so a sequence that ended with EOS must satisfy its
// constraint; one cut short by max_new_tokens (LENGTH) may be a partial prefix.
func constrained(prompt string, maxNew uint32, c *pb.Constraint) *pb.GenerateRequest {
	return &pb.GenerateRequest{Model: "tiny-llama", Prompt: prompt, Constraint: c,
		Stopping: &pb.StoppingParams{MaxNewTokens: &maxNew}}
}

func eos(s *pb.Sequence) bool { return s.GetFinishReason() == pb.FinishReason_FINISH_REASON_EOS_TOKEN }

func TestConstraintChoices(t *testing.T) {
	choices := []string{"yes", "no", "maybe"}
	c := &pb.Constraint{Kind: &pb.Constraint_Choices{Choices: &pb.ChoiceList{Values: choices}}}
	seed := uint64(11)
	temperature := float32(1.5)
	for _, req := range []*pb.GenerateRequest{
		constrained("Is it raining?", 16, c),
		{Model: "tiny-llama", Prompt: "Is it raining?", Constraint: c, NumReturnSequences: 3,
			Method:   pb.DecodingMethod_DECODING_METHOD_SAMPLE,
			Sampling: &pb.SamplingParams{Temperature: &temperature, Seed: &seed}},
	} {
		resp, err := client.Generate(ctxT(t), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetSequences()) != max(1, int(req.GetNumReturnSequences())) {
			t.Fatalf("sequences = %v", resp.GetSequences())
		}
		for _, s := range resp.GetSequences() {
			// The longest choice is a few tokens: after it the grammar allows only EOS.
			if !eos(s) || !slices.Contains(choices, s.GetText()) {
				t.Errorf("choices %q: sequence %q finished with %v, want one of the choices and EOS",
					choices, s.GetText(), s.GetFinishReason())
			}
		}
	}
}

func TestConstraintJSONSchemaSampled(t *testing.T) {
	schema := `{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]}`
	seed := uint64(5)
	temperature := float32(1.5)
	req := constrained("A status record:", 32, &pb.Constraint{Kind: &pb.Constraint_JsonSchema{JsonSchema: schema}})
	req.Method = pb.DecodingMethod_DECODING_METHOD_SAMPLE
	req.Sampling = &pb.SamplingParams{Temperature: &temperature, Seed: &seed}
	req.NumReturnSequences = 3
	resp, err := client.Generate(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetSequences()) != 3 {
		t.Fatalf("sequences = %v", resp.GetSequences())
	}
	finished := 0
	for _, s := range resp.GetSequences() {
		if !eos(s) {
			continue
		}
		finished++
		var doc map[string]any
		if err := json.Unmarshal([]byte(s.GetText()), &doc); err != nil {
			t.Errorf("EOS-finished text %q is not a JSON object: %v", s.GetText(), err)
			continue
		}
		if _, isBool := doc["ok"].(bool); !isBool || len(doc) != 1 {
			t.Errorf("EOS-finished text %q: want exactly a boolean \"ok\"", s.GetText())
		}
	}
	if finished == 0 {
		t.Errorf("no sequence of %v finished with EOS within 32 tokens", resp.GetSequences())
	}
}

func TestConstraintRegexStreamed(t *testing.T) {
	pattern := `(red|green|blue)-[0-9]{2,4}`
	full := regexp.MustCompile(`^(?:` + pattern + `)$`)
	req := constrained("The code is", 24, &pb.Constraint{Kind: &pb.Constraint_Regex{Regex: pattern}})
	var text strings.Builder
	var reason pb.FinishReason
	for msg, err := range client.Stream(ctxT(t), req) {
		if err != nil {
			t.Fatal(err)
		}
		text.WriteString(msg.GetText())
		if msg.GetFinishReason() != pb.FinishReason_FINISH_REASON_UNSPECIFIED {
			reason = msg.GetFinishReason()
		}
	}
	// The regex is bounded (at most 10 characters), so greedy decoding reaches its end and EOS.
	if reason != pb.FinishReason_FINISH_REASON_EOS_TOKEN || !full.MatchString(text.String()) {
		t.Errorf("streamed %q finished with %v, want a full match of %s and EOS", text.String(), reason, pattern)
	}
	// The stream concatenates to what Generate returns.
	want, err := client.Generate(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := want.GetSequences()[0].GetText(); got != text.String() {
		t.Errorf("Generate gave %q, the stream %q", got, text.String())
	}
}

func TestConstraintInvalidRegex(t *testing.T) {
	_, err := client.Generate(ctxT(t), constrained("x", 4, &pb.Constraint{Kind: &pb.Constraint_Regex{Regex: "(("}}))
	e := tokenwire.AsError(err)
	if e == nil || e.Code != codes.InvalidArgument {
		t.Fatalf("Generate(regex \"((\") err = %v, want INVALID_ARGUMENT", err)
	}
	if desc, ok := e.Field("constraint.regex"); !ok || desc == "" {
		t.Errorf("violations = %+v, want one of constraint.regex", e.FieldViolations)
	}
}

func TestUnderstanding(t *testing.T) {
	ctx := ctxT(t)
	fill, err := client.Understanding.FillMask(ctx, &pb.FillMaskRequest{Model: "tiny-bert", Text: "The capital of France is [MASK].", TopK: 3})
	if ok(t, "FillMask", err) {
		if len(fill.GetMasks()) != 1 || len(fill.GetMasks()[0].GetCandidates()) != 3 {
			t.Errorf("FillMask = %v, want one mask with 3 candidates", fill)
		}
	}
	nsp, err := client.Understanding.NextSentence(ctx, &pb.NextSentenceRequest{
		Model: "tiny-bert", SentenceA: "I went to the store.", SentenceB: "I bought some milk."})
	if ok(t, "NextSentence", err) {
		if sum := nsp.GetIsNextProbability() + nsp.GetNotNextProbability(); math.Abs(float64(sum)-1) > 1e-4 {
			t.Errorf("NextSentence probabilities sum to %v", sum)
		}
	}
	context := "Paris is the capital of France. It has the Eiffel Tower."
	qa, err := client.Understanding.AnswerQuestion(ctx, &pb.AnswerQuestionRequest{
		Model: "tiny-bert-qa", Question: "What is the capital of France?", Context: context, TopK: 2})
	if ok(t, "AnswerQuestion", err) {
		runes := []rune(context)
		for _, a := range qa.GetAnswers() {
			if a.GetEnd() < a.GetStart() || int(a.GetEnd()) > len(runes) || string(runes[a.GetStart():a.GetEnd()]) != a.GetText() {
				t.Errorf("answer %v is not context[start:end]", a)
			}
		}
	}
}

func TestEncoderTasks(t *testing.T) {
	ctx := ctxT(t)
	descending := func(scores []float32) bool {
		return sort.SliceIsSorted(scores, func(i, j int) bool { return scores[i] > scores[j] })
	}
	unitNorm := func(values []float32) bool {
		var norm float64
		for _, v := range values {
			norm += float64(v) * float64(v)
		}
		return math.Abs(math.Sqrt(norm)-1) < 1e-3
	}

	cls, err := client.Understanding.ClassifyText(ctx, &pb.ClassifyTextRequest{
		Model: "tiny-bert-classifier",
		Inputs: []*pb.TextInput{
			{Text: "What a lovely day."},
			{Text: "A man eats food.", TextPair: "A man is eating."},
		},
	})
	if ok(t, "ClassifyText", err) {
		if len(cls.GetResults()) != 2 {
			t.Fatalf("ClassifyText = %v, want 2 results", cls)
		}
		for _, r := range cls.GetResults() {
			var scores []float32
			var sum float64
			labels := map[string]bool{}
			for _, l := range r.GetLabels() {
				scores = append(scores, l.GetScore())
				sum += float64(l.GetScore())
				labels[l.GetLabel()] = true
			}
			if len(scores) != 3 || !labels["negative"] || !labels["neutral"] || !labels["positive"] ||
				math.Abs(sum-1) > 1e-4 || !descending(scores) {
				t.Errorf("ClassifyText result %v, want 3 softmax labels best first", r)
			}
		}
	}
	top, err := client.Understanding.ClassifyText(ctx, &pb.ClassifyTextRequest{
		Model: "tiny-bert-classifier", Inputs: []*pb.TextInput{{Text: "fine"}}, TopK: 1,
		Function: pb.ClassifyFunction_CLASSIFY_FUNCTION_SIGMOID})
	if ok(t, "ClassifyText(top_k, sigmoid)", err) && len(top.GetResults()[0].GetLabels()) != 1 {
		t.Errorf("ClassifyText(top_k=1) = %v", top)
	}

	text := "John Smith lives in Paris and works for the United Nations."
	runes := []rune(text)
	tokens, err := client.Understanding.ClassifyTokens(ctx, &pb.ClassifyTokensRequest{
		Model: "tiny-bert-ner", Text: text, IgnoreLabels: []string{"-"}}) // "-": every token back
	if ok(t, "ClassifyTokens", err) {
		if len(tokens.GetEntities()) < 10 {
			t.Errorf("ClassifyTokens(ignore_labels=[-]) = %d entities, want one per token", len(tokens.GetEntities()))
		}
		for _, e := range tokens.GetEntities() {
			if e.GetStart() >= e.GetEnd() || int(e.GetEnd()) > len(runes) || e.GetIndex() == 0 || e.GetScore() <= 0 {
				t.Errorf("token entity %v", e)
			}
		}
	}
	grouped, err := client.Understanding.ClassifyTokens(ctx, &pb.ClassifyTokensRequest{
		Model: "tiny-bert-ner", Text: text, Aggregation: pb.Aggregation_AGGREGATION_SIMPLE})
	if ok(t, "ClassifyTokens(simple)", err) {
		for _, e := range grouped.GetEntities() {
			if l := e.GetLabel(); l != "PER" && l != "LOC" && l != "ORG" {
				t.Errorf("aggregated entity %v, want a label without B-/I- and not O", e)
			}
		}
	}

	emb, err := client.Understanding.EmbedText(ctx, &pb.EmbedTextRequest{
		Model: "tiny-bert-embed", Texts: []string{"a sentence", "another, longer sentence"}})
	if ok(t, "EmbedText", err) {
		if len(emb.GetEmbeddings()) != 2 || emb.GetDimensions() != 64 {
			t.Fatalf("EmbedText = %d vectors of %d", len(emb.GetEmbeddings()), emb.GetDimensions())
		}
		for _, e := range emb.GetEmbeddings() {
			if len(e.GetValues()) != 64 || !unitNorm(e.GetValues()) { // the checkpoint normalizes
				t.Errorf("embedding of %d values, not unit norm", len(e.GetValues()))
			}
		}
	}
	cut, err := client.Understanding.EmbedText(ctx, &pb.EmbedTextRequest{
		Model: "tiny-bert-embed", Texts: []string{"a sentence"}, Dimensions: 16, Normalize: true,
		Pooling: pb.Pooling_POOLING_CLS})
	if ok(t, "EmbedText(dimensions=16)", err) {
		if cut.GetDimensions() != 16 || len(cut.GetEmbeddings()[0].GetValues()) != 16 || !unitNorm(cut.GetEmbeddings()[0].GetValues()) {
			t.Errorf("EmbedText(dimensions=16, normalize) = %v", cut)
		}
	}

	docs := []string{"Marie Curie was born in Warsaw.", "The Eiffel Tower is in Paris.", "Bananas are rich in potassium."}
	rr, err := client.Understanding.Rerank(ctx, &pb.RerankRequest{
		Model: "tiny-bert-reranker", Query: "Where was Marie Curie born?", Documents: docs, TopN: 2})
	if ok(t, "Rerank", err) {
		var scores []float32
		seen := map[uint32]bool{}
		for _, r := range rr.GetResults() {
			scores = append(scores, r.GetScore())
			if int(r.GetIndex()) >= len(docs) || seen[r.GetIndex()] || r.GetScore() < 0 || r.GetScore() > 1 {
				t.Errorf("rerank result %v", r)
			}
			seen[r.GetIndex()] = true
		}
		if len(scores) != 2 || !descending(scores) {
			t.Errorf("Rerank(top_n=2) = %v, want 2 results best first", rr)
		}
	}

	_, err = client.Understanding.ClassifyText(ctx, &pb.ClassifyTextRequest{Model: "tiny-bert-ner", Inputs: []*pb.TextInput{{Text: "x"}}})
	if e := tokenwire.AsError(err); e == nil || e.Code != codes.FailedPrecondition {
		t.Errorf("ClassifyText on a token classifier: %v", err)
	}
	_, err = client.Understanding.EmbedText(ctx, &pb.EmbedTextRequest{Model: "tiny-bert-embed", Texts: []string{"ok", ""}})
	if e := tokenwire.AsError(err); e == nil || e.Code != codes.InvalidArgument {
		t.Errorf("EmbedText with an empty text: %v", err)
	} else if _, ok := e.Field("texts[1]"); !ok {
		t.Errorf("EmbedText violations = %+v, want texts[1]", e.FieldViolations)
	}
}

func TestMultimodal(t *testing.T) {
	ctx := ctxT(t)
	img := &pb.Image{Data: testPNG(t), MimeType: "image/png"}
	maxNew := uint32(8)
	chat := &pb.MultimodalChatRequest{
		Model: "tiny-llava",
		Messages: []*pb.ChatMessage{{Role: "user", Parts: []*pb.ContentPart{
			{Content: &pb.ContentPart_Image{Image: img}},
			{Content: &pb.ContentPart_Text{Text: "What is in this picture?"}},
		}}},
		Stopping: &pb.StoppingParams{MaxNewTokens: &maxNew},
	}
	reply, err := client.Multimodal.MultimodalChat(ctx, chat)
	if ok(t, "MultimodalChat", err) {
		if len(reply.GetSequences()) != 1 || reply.GetSequences()[0].GetFinishReason() == pb.FinishReason_FINISH_REASON_UNSPECIFIED {
			t.Errorf("MultimodalChat = %v", reply)
		}
	}

	acc := tokenwire.NewAccumulator()
	var streamErr error
	for msg, err := range client.ChatStream(ctx, chat) {
		if err != nil {
			streamErr = err
			break
		}
		acc.Add(msg)
	}
	if ok(t, "MultimodalChatStream", streamErr) {
		seqs := acc.Response().GetSequences()
		if len(seqs) != 1 || seqs[0].GetFinishReason() == pb.FinishReason_FINISH_REASON_UNSPECIFIED {
			t.Errorf("MultimodalChatStream folded to %v", seqs)
		}
	}

	labels := []string{"a cat", "a dog", "a gradient"}
	cls, err := client.Multimodal.ClassifyImage(ctx, &pb.ClassifyImageRequest{Model: "tiny-clip", Image: img, Labels: labels})
	if ok(t, "ClassifyImage", err) {
		scores := cls.GetScores()
		var sum float64
		for _, s := range scores {
			sum += float64(s.GetScore())
		}
		sorted := sort.SliceIsSorted(scores, func(i, j int) bool { return scores[i].GetScore() > scores[j].GetScore() })
		if len(scores) != len(labels) || math.Abs(sum-1) > 1e-3 || !sorted {
			t.Errorf("ClassifyImage = %v", cls)
		}
	}

	emb, err := client.Multimodal.Embed(ctx, &pb.EmbedRequest{Model: "tiny-clip", Texts: []string{"a photo of a cat"}, Images: []*pb.Image{img}, Normalize: true})
	if ok(t, "Embed", err) {
		if len(emb.GetEmbeddings()) != 2 || emb.GetDimensions() == 0 {
			t.Fatalf("Embed = %v", emb)
		}
		for _, e := range emb.GetEmbeddings() {
			var norm float64
			for _, v := range e.GetValues() {
				norm += float64(v) * float64(v)
			}
			if len(e.GetValues()) != int(emb.GetDimensions()) || math.Abs(math.Sqrt(norm)-1) > 1e-3 {
				t.Errorf("embedding of %d values, norm %v", len(e.GetValues()), math.Sqrt(norm))
			}
		}
	}
}
