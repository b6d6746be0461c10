// Command tokenwire-go is an example client of the tokenwire server in Go.
//
//	tokenwire-go [-target HOST:PORT] models
//	tokenwire-go [-target HOST:PORT] generate [-model M] [-max-new-tokens N] [-temperature T] [-seed S] [-stream]
//	             [-json-schema FILE | -json-object | -regex RE | -grammar FILE | -choice S ...] PROMPT
//	tokenwire-go [-target HOST:PORT] tokenize [-model M] TEXT
//
// Errors print their status code, field violations and request id, and exit 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokenwire/tokenwire/clients/go/tokenwire"
	pb "github.com/tokenwire/tokenwire/clients/go/tokenwirev1"
)

func main() {
	target := flag.String("target", tokenwire.DefaultTarget, "server address HOST:PORT")
	timeout := flag.Duration("timeout", time.Minute, "deadline of each call")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: tokenwire-go [-target HOST:PORT] models | generate [flags] PROMPT | tokenize [flags] TEXT")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		os.Exit(2)
	}
	c, err := tokenwire.Dial(*target)
	if err != nil {
		fail(err)
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	switch cmd, args := flag.Arg(0), flag.Args()[1:]; cmd {
	case "models":
		err = models(ctx, c)
	case "generate":
		err = generate(ctx, c, args)
	case "tokenize":
		err = tokenize(ctx, c, args)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	var e *tokenwire.Error
	if errors.As(err, &e) {
		fmt.Fprintf(os.Stderr, "error: %s: %s\n", e.Code, e.Message)
		for _, v := range e.FieldViolations {
			fmt.Fprintf(os.Stderr, "  field %s: %s\n", v.Field, v.Description)
		}
		if e.RequestID != "" {
			fmt.Fprintf(os.Stderr, "  request id: %s\n", e.RequestID)
		}
	} else {
		fmt.Fprintln(os.Stderr, "error:", err)
	}
	os.Exit(1)
}

func models(ctx context.Context, c *tokenwire.Client) error {
	list, err := c.Models.ListModels(ctx, &pb.ListModelsRequest{})
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, m := range list.GetModels() {
		var tasks []string
		for _, t := range m.GetTasks() {
			tasks = append(tasks, strings.ToLower(strings.TrimPrefix(t.String(), "TASK_")))
		}
		state := strings.ToLower(strings.TrimPrefix(m.GetState().String(), "MODEL_STATE_"))
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", m.GetName(), state, strings.Join(tasks, ","), m.GetArchitecture())
	}
	return w.Flush()
}

func generate(ctx context.Context, c *tokenwire.Client, args []string) error {
	fs := flag.NewFlagSet("generate", flag.ExitOnError)
	model := fs.String("model", "tiny-llama", "model name")
	maxNew := fs.Uint("max-new-tokens", 32, "most tokens to generate")
	temperature := fs.Float64("temperature", 0, "sampling temperature; > 0 samples, 0 is greedy")
	topP := fs.Float64("top-p", 1, "nucleus sampling probability (with -temperature)")
	seed := fs.Uint64("seed", 0, "sampling seed (with -temperature; 0 = server's choice)")
	stream := fs.Bool("stream", false, "print tokens as they arrive")
	// Structured output (docs/structured-output.md), at most one of these.
	schemaFile := fs.String("json-schema", "", "output valid against the JSON Schema in this file")
	jsonObject := fs.Bool("json-object", false, "output is any JSON value")
	regex := fs.String("regex", "", "output matches this regular expression")
	grammarFile := fs.String("grammar", "", "output follows the EBNF (GBNF) grammar in this file")
	var choices []string
	fs.Func("choice", "output is one of these strings (repeatable)", func(s string) error {
		choices = append(choices, s)
		return nil
	})
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("generate takes one PROMPT argument")
	}
	n := uint32(*maxNew)
	req := &pb.GenerateRequest{Model: *model, Prompt: fs.Arg(0), Stopping: &pb.StoppingParams{MaxNewTokens: &n}}
	var kinds []*pb.Constraint
	if *schemaFile != "" {
		schema, err := os.ReadFile(*schemaFile)
		if err != nil {
			return err
		}
		kinds = append(kinds, &pb.Constraint{Kind: &pb.Constraint_JsonSchema{JsonSchema: string(schema)}})
	}
	if *jsonObject {
		kinds = append(kinds, &pb.Constraint{Kind: &pb.Constraint_JsonObject{JsonObject: true}})
	}
	if *regex != "" {
		kinds = append(kinds, &pb.Constraint{Kind: &pb.Constraint_Regex{Regex: *regex}})
	}
	if *grammarFile != "" {
		grammar, err := os.ReadFile(*grammarFile)
		if err != nil {
			return err
		}
		kinds = append(kinds, &pb.Constraint{Kind: &pb.Constraint_Grammar{Grammar: string(grammar)}})
	}
	if len(choices) > 0 {
		kinds = append(kinds, &pb.Constraint{Kind: &pb.Constraint_Choices{Choices: &pb.ChoiceList{Values: choices}}})
	}
	switch len(kinds) {
	case 0:
	case 1:
		req.Constraint = kinds[0]
	default:
		return errors.New("-json-schema, -json-object, -regex, -grammar and -choice exclude each other")
	}
	if *temperature > 0 {
		t, p := float32(*temperature), float32(*topP)
		req.Method = pb.DecodingMethod_DECODING_METHOD_SAMPLE
		req.Sampling = &pb.SamplingParams{Temperature: &t, TopP: &p}
		if *seed != 0 {
			req.Sampling.Seed = seed
		}
	}
	var resp *pb.GenerateResponse
	var err error
	if *stream {
		resp, err = c.GenerateStream(ctx, req, func(m *pb.GenerateStreamResponse) error {
			fmt.Print(m.GetText())
			return nil
		})
		fmt.Println()
	} else {
		resp, err = c.Generate(ctx, req)
		if err == nil {
			fmt.Println(resp.GetSequences()[0].GetText())
		}
	}
	if err != nil {
		return err
	}
	seq := resp.GetSequences()[0]
	fmt.Fprintf(os.Stderr, "[%s, %d prompt + %d generated tokens]\n",
		strings.ToLower(strings.TrimPrefix(seq.GetFinishReason().String(), "FINISH_REASON_")),
		resp.GetUsage().GetPromptTokens(), resp.GetUsage().GetCompletionTokens())
	return nil
}

func tokenize(ctx context.Context, c *tokenwire.Client, args []string) error {
	fs := flag.NewFlagSet("tokenize", flag.ExitOnError)
	model := fs.String("model", "tiny-llama", "model name")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("tokenize takes one TEXT argument")
	}
	resp, err := c.Models.Tokenize(ctx, &pb.TokenizeRequest{Model: *model, Text: fs.Arg(0)})
	if err != nil {
		return err
	}
	for i, id := range resp.GetIds() {
		off := resp.GetOffsets()[i]
		fmt.Printf("%d\t%q\t[%d, %d)\n", id, resp.GetTokens()[i], off.GetStart(), off.GetEnd())
	}
	return nil
}
