"""Client subcommands of `tokenwire`: one per RPC, `--target` and `--json` on each.

Plain output is for people (the text, or a short table); `--json` prints the response message
in proto3 JSON (lowerCamelCase), one object per line for streams.
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

DEFAULT_TARGET = "127.0.0.1:50051"


def _print_json(message: Any) -> None:
    from google.protobuf import json_format

    print(json_format.MessageToJson(message, indent=None, ensure_ascii=False))


def _client(args: argparse.Namespace) -> Any:
    from .client import Client

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    token = Path(args.auth_token_file).read_text().strip().splitlines()[0] if args.auth_token_file else None
    return Client(
        args.target,
        tls=args.tls,
        tls_ca=read(args.tls_ca),
        tls_cert=read(args.tls_cert),
        tls_key=read(args.tls_key),
        token=token,
    )


def _run(call: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn RPC errors into one readable line (plus field violations) and exit status 1."""

    def wrapped(args: argparse.Namespace) -> int:
        import grpc

        from .client import field_violations

        try:
            if args.command in _TASK_OF_COMMAND and args.model is None:
                args.model = _default_model(args)
            return call(args)
        except grpc.RpcError as err:
            print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
            for field, description in field_violations(err):
                print(f"  field {field}: {description}", file=sys.stderr)
            return 1
        except BrokenPipeError:
            # The reader went away (`... | head -1`): stop quietly, as Unix tools do when SIGPIPE
            # ends them. Point stdout at /dev/null so the interpreter's final flush cannot raise.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 128 + signal.SIGPIPE

    return wrapped


# Commands whose --model may be omitted → the task whose first READY model they then use.
_TASK_OF_COMMAND = {
    "tokenize": "TASK_UNSPECIFIED",
    "detokenize": "TASK_UNSPECIFIED",
    "generate": "TASK_GENERATE",
    "chat": "TASK_MULTIMODAL_CHAT",
    "fill-mask": "TASK_FILL_MASK",
    "next-sentence": "TASK_NEXT_SENTENCE",
    "answer": "TASK_ANSWER_QUESTION",
    "classify-image": "TASK_CLASSIFY_IMAGE",
    "embed": "TASK_EMBED",
    "classify-text": "TASK_CLASSIFY_TEXT",
    "classify-tokens": "TASK_CLASSIFY_TOKENS",
    "embed-text": "TASK_EMBED_TEXT",
    "rerank": "TASK_RERANK",
}


def _default_model(args: argparse.Namespace) -> str:
    """The first READY model (by name) that does the command's task; exits when there is none."""
    from .v1 import models_pb2

    task = _TASK_OF_COMMAND[args.command]  # the enum value's name, which protobuf accepts too
    with _client(args) as c:
        models = c.models.ListModels(models_pb2.ListModelsRequest(task=task), timeout=args.timeout).models
    ready = [m.name for m in models if m.state == models_pb2.MODEL_STATE_READY]
    if not ready:
        what = task.removeprefix("TASK_").lower()
        raise SystemExit(f"error: no ready model on {args.target} does {what}; pass --model")
    return str(ready[0])


def _image(path: str) -> Any:
    from .v1 import common_pb2

    # An unknown extension sends no mime type: the server then detects the format from the bytes.
    mime = mimetypes.guess_type(path)[0] or ""
    return common_pb2.Image(data=Path(path).read_bytes(), mime_type=mime if mime.startswith("image/") else "")


# --- Models -----------------------------------------------------------------------------------


def _models(args: argparse.Namespace) -> int:
    from .v1 import models_pb2

    with _client(args) as c:
        if args.model:
            info = c.models.GetModelInfo(models_pb2.GetModelInfoRequest(model=args.model), timeout=args.timeout)
            infos: Iterable[Any] = [info]
        else:
            infos = c.models.ListModels(models_pb2.ListModelsRequest(), timeout=args.timeout).models
        infos = list(infos)
        width = max((len(info.name) for info in infos), default=0)  # columns line up, whatever the names
        for info in infos:
            if args.json:
                _print_json(info)
            else:
                tasks = ",".join(models_pb2.Task.Name(t).removeprefix("TASK_").lower() for t in info.tasks)
                state = models_pb2.ModelState.Name(info.state).removeprefix("MODEL_STATE_").lower()
                print(
                    f"{info.name:{width}} {state:8} {tasks:32} {info.architecture} ({info.dtype or '?'}) {info.source}"
                )
    return 0


def _tokenize(args: argparse.Namespace) -> int:
    from .v1 import models_pb2

    with _client(args) as c:
        reply = c.models.Tokenize(
            models_pb2.TokenizeRequest(model=args.model, text=args.text, add_special_tokens=not args.no_special_tokens),
            timeout=args.timeout,
        )
    if args.json:
        _print_json(reply)
    else:
        for i, tok, off in zip(reply.ids, reply.tokens, reply.offsets, strict=True):
            print(f"{i}\t{tok!r}\t[{off.start}, {off.end})")
    return 0


def _detokenize(args: argparse.Namespace) -> int:
    from .v1 import models_pb2

    with _client(args) as c:
        reply = c.models.Detokenize(
            models_pb2.DetokenizeRequest(model=args.model, ids=args.ids, skip_special_tokens=args.skip_special_tokens),
            timeout=args.timeout,
        )
    _print_json(reply) if args.json else print(reply.text)
    return 0


# --- Generation ---------------------------------------------------------------------------------


def _generation_fields(args: argparse.Namespace) -> dict[str, Any]:
    from .v1 import common_pb2

    sampling = common_pb2.SamplingParams()
    for name in ("temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty", "seed"):
        if getattr(args, name) is not None:
            setattr(sampling, name, getattr(args, name))
    stopping = common_pb2.StoppingParams(
        stop=args.stop or [], ignore_eos=args.ignore_eos, min_new_tokens=args.min_new_tokens or 0
    )
    if args.max_new_tokens is not None:
        stopping.max_new_tokens = args.max_new_tokens
    beam = common_pb2.BeamParams()
    method = common_pb2.DECODING_METHOD_GREEDY
    if args.num_beams and args.num_beams > 1:
        method, beam.num_beams = common_pb2.DECODING_METHOD_BEAM_SEARCH, args.num_beams
    elif args.sample or any(getattr(args, n) is not None for n in ("temperature", "top_k", "top_p", "seed")):
        method = common_pb2.DECODING_METHOD_SAMPLE
    fields = {
        "method": method,
        "sampling": sampling,
        "stopping": stopping,
        "beam": beam,
        "num_return_sequences": args.n,
    }
    constraint = _constraint(args)
    if constraint is not None:
        fields["constraint"] = constraint
    return fields


def _constraint(args: argparse.Namespace) -> Any:
    """The structured-output flags → a Constraint (at most one kind; argparse enforces it)."""
    from .v1 import common_pb2

    if args.json_schema is not None:
        return common_pb2.Constraint(json_schema=_read_text(args.json_schema, "--json-schema"))
    if args.grammar is not None:
        return common_pb2.Constraint(grammar=_read_text(args.grammar, "--grammar"))
    if args.regex is not None:
        return common_pb2.Constraint(regex=args.regex)
    if args.choice:
        return common_pb2.Constraint(choices=common_pb2.ChoiceList(values=args.choice))
    if args.json_object:
        return common_pb2.Constraint(json_object=True)
    return None


def _read_text(path: str, flag: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SystemExit(f"tokenwire: {flag}: cannot read {path}: {exc.strerror}") from None


def _print_generation(
    args: argparse.Namespace, call: Callable[..., Any], stream_call: Callable[..., Any], request: Any
) -> int:
    if args.stream:
        for chunk in stream_call(request, timeout=args.timeout):
            if args.json:
                _print_json(chunk)
            else:
                print(chunk.text, end="", flush=True)
        if not args.json:
            print()
        return 0
    reply = call(request, timeout=args.timeout)
    if args.json:
        _print_json(reply)
    else:
        for seq in reply.sequences:
            print(seq.text)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from .v1 import generation_pb2

    request = generation_pb2.GenerateRequest(model=args.model, prompt=args.prompt, **_generation_fields(args))
    with _client(args) as c:
        return _print_generation(args, c.generation.Generate, c.generation.GenerateStream, request)


def _chat(args: argparse.Namespace) -> int:
    from .v1 import multimodal_pb2

    parts = [multimodal_pb2.ContentPart(image=_image(p)) for p in args.image or []]
    parts.append(multimodal_pb2.ContentPart(text=args.text))
    request = multimodal_pb2.MultimodalChatRequest(
        model=args.model, messages=[multimodal_pb2.ChatMessage(role="user", parts=parts)], **_generation_fields(args)
    )
    with _client(args) as c:
        return _print_generation(args, c.multimodal.MultimodalChat, c.multimodal.MultimodalChatStream, request)


# --- Understanding and multimodal -------------------------------------------------------------


def _fill_mask(args: argparse.Namespace) -> int:
    from .v1 import understanding_pb2

    with _client(args) as c:
        reply = c.understanding.FillMask(
            understanding_pb2.FillMaskRequest(
                model=args.model,
                text=args.text,
                top_k=args.top_k,
                targets=args.target_word or [],
                truncate=args.truncate,
            ),
            timeout=args.timeout,
        )
    if args.json:
        _print_json(reply)
    else:
        for i, mask in enumerate(reply.masks):
            for cand in mask.candidates:
                print(f"mask {i}\t{cand.score:.4f}\t{cand.token}\t{cand.sequence}")
    return 0


def _next_sentence(args: argparse.Namespace) -> int:
    from .v1 import understanding_pb2

    with _client(args) as c:
        reply = c.understanding.NextSentence(
            understanding_pb2.NextSentenceRequest(
                model=args.model, sentence_a=args.sentence_a, sentence_b=args.sentence_b, truncate=args.truncate
            ),
            timeout=args.timeout,
        )
    _print_json(reply) if args.json else print(f"is_next={reply.is_next} p={reply.is_next_probability:.4f}")
    return 0


def _answer(args: argparse.Namespace) -> int:
    from .v1 import understanding_pb2

    with _client(args) as c:
        reply = c.understanding.AnswerQuestion(
            understanding_pb2.AnswerQuestionRequest(
                model=args.model,
                question=args.question,
                context=args.context,
                top_k=args.top_k,
                max_answer_length=args.max_answer_length,
                doc_stride=args.doc_stride,
                handle_impossible_answer=args.handle_impossible_answer,
            ),
            timeout=args.timeout,
        )
    if args.json:
        _print_json(reply)
    else:
        for a in reply.answers:
            print(f"{a.score:.4f}\t[{a.start}, {a.end})\t{a.text}")
    return 0


def _enum_name(prefix: str, choice: str | None) -> str:
    """A lower-case --option choice ("softmax") → its enum value's name, which protobuf takes
    (CLASSIFY_FUNCTION_SOFTMAX); None → the UNSPECIFIED value (the model's own)."""
    return prefix + (choice or "unspecified").upper()


def _classify_text(args: argparse.Namespace) -> int:
    from .v1 import understanding_pb2

    pairs = args.pair or []
    if pairs and len(pairs) != len(args.texts):
        raise SystemExit(f"error: {len(pairs)} --pair for {len(args.texts)} texts; give one --pair per text")
    inputs = [
        understanding_pb2.TextInput(text=text, text_pair=pairs[i] if pairs else "") for i, text in enumerate(args.texts)
    ]
    with _client(args) as c:
        reply = c.understanding.ClassifyText(
            understanding_pb2.ClassifyTextRequest(
                model=args.model,
                inputs=inputs,
                top_k=args.top_k,
                function=_enum_name("CLASSIFY_FUNCTION_", args.function),
                truncate=args.truncate,
            ),
            timeout=args.timeout,
        )
    if args.json:
        _print_json(reply)
    else:
        for i, result in enumerate(reply.results):
            for label in result.labels:
                print(f"input {i}\t{label.score:.4f}\t{label.label}")
    return 0


def _classify_tokens(args: argparse.Namespace) -> int:
    from .v1 import understanding_pb2

    with _client(args) as c:
        reply = c.understanding.ClassifyTokens(
            understanding_pb2.ClassifyTokensRequest(
                model=args.model,
                text=args.text,
                aggregation=_enum_name("AGGREGATION_", args.aggregation),
                ignore_labels=args.ignore_label or [],
                truncate=args.truncate,
            ),
            timeout=args.timeout,
        )
    if args.json:
        _print_json(reply)
    else:
        for e in reply.entities:
            print(f"{e.score:.4f}\t[{e.start}, {e.end})\t{e.label}\t{e.word}")
    return 0


def _embed_text(args: argparse.Namespace) -> int:
    from .v1 import understanding_pb2

    with _client(args) as c:
        reply = c.understanding.EmbedText(
            understanding_pb2.EmbedTextRequest(
                model=args.model,
                texts=args.texts,
                pooling=_enum_name("POOLING_", args.pooling),
                normalize=args.normalize,
                dimensions=args.dimensions,
                truncate=args.truncate,
            ),
            timeout=args.timeout,
        )
    if args.json:
        _print_json(reply)
    else:
        for e in reply.embeddings:
            print(" ".join(f"{v:.5f}" for v in e.values))
    return 0


def _rerank(args: argparse.Namespace) -> int:
    from .v1 import understanding_pb2

    with _client(args) as c:
        reply = c.understanding.Rerank(
            understanding_pb2.RerankRequest(
                model=args.model,
                query=args.query,
                documents=args.documents,
                top_n=args.top_n,
                truncate=args.truncate,
                raw_scores=args.raw_scores,
            ),
            timeout=args.timeout,
        )
    if args.json:
        _print_json(reply)
    else:
        for r in reply.results:
            print(f"{r.score:.4f}\t{r.index}\t{args.documents[r.index]}")
    return 0


def _classify_image(args: argparse.Namespace) -> int:
    from .v1 import multimodal_pb2

    with _client(args) as c:
        reply = c.multimodal.ClassifyImage(
            multimodal_pb2.ClassifyImageRequest(
                model=args.model,
                image=_image(args.image),
                labels=args.labels,
                hypothesis_template=args.hypothesis_template or "",
            ),
            timeout=args.timeout,
        )
    if args.json:
        _print_json(reply)
    else:
        for s in reply.scores:
            print(f"{s.score:.4f}\t{s.label}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    from .v1 import multimodal_pb2

    with _client(args) as c:
        reply = c.multimodal.Embed(
            multimodal_pb2.EmbedRequest(
                model=args.model,
                texts=args.text or [],
                images=[_image(p) for p in args.image or []],
                normalize=args.normalize,
                truncate=args.truncate,
            ),
            timeout=args.timeout,
        )
    if args.json:
        _print_json(reply)
    else:
        for e in reply.embeddings:
            print(" ".join(f"{v:.5f}" for v in e.values))
    return 0


def _generation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--min-new-tokens", type=int, help="no end of sequence before this many tokens")
    p.add_argument("--ignore-eos", action="store_true", help="go on past end-of-sequence tokens")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--min-p", type=float)
    p.add_argument("--typical-p", type=float)
    p.add_argument("--repetition-penalty", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--num-beams", type=int, help="beam search with this many beams")
    p.add_argument("-n", type=int, default=1, help="sequences to return")
    p.add_argument("--stop", action="append", help="stop string (repeatable)")
    structured = p.add_argument_group("structured output (one of)").add_mutually_exclusive_group()
    structured.add_argument("--json-schema", metavar="FILE", help="output valid against this JSON Schema ('-': stdin)")
    structured.add_argument("--json-object", action="store_true", help="output is any JSON value")
    structured.add_argument("--regex", help="output matches this regular expression")
    structured.add_argument("--grammar", metavar="FILE", help="output follows this EBNF (GBNF) grammar ('-': stdin)")
    structured.add_argument("--choice", action="append", help="output is one of these strings (repeatable)")


# One example per command, shown at the end of its --help.
EXAMPLES = {
    "models": "tokenwire models\n  tokenwire models tiny-llama --json",
    "tokenize": 'tokenwire tokenize --model tiny-gpt2 "naïve café"',
    "detokenize": "tokenwire detokenize --model tiny-gpt2 917 769",
    "generate": 'tokenwire generate --model tiny-llama --stream --max-new-tokens 32 "Once upon a time"\n'
    '  tokenwire generate --sample --temperature 0.8 --seed 7 -n 2 "Dear colleagues,"\n'
    '  tokenwire generate --json-schema person.json "A person:"\n'
    '  tokenwire generate --choice yes --choice no "Is it raining?"',
    "chat": 'tokenwire chat --image cat.png "What is in this picture?"',
    "fill-mask": 'tokenwire fill-mask --model tiny-bert "The capital of France, [MASK], contains the Eiffel Tower."',
    "next-sentence": 'tokenwire next-sentence "I went to the store." "I bought some milk."',
    "answer": 'tokenwire answer --question "Where is the cat?" --context "The cat sat on the mat."',
    "classify-text": 'tokenwire classify-text --top-k 2 "What a lovely day." "The service was slow."\n'
    '  tokenwire classify-text --pair "A man eats food." "A man is eating."',
    "classify-tokens": 'tokenwire classify-tokens --aggregation simple "Ada Lovelace lived in London."',
    "embed-text": 'tokenwire embed-text --normalize --dimensions 32 "a sentence" "another sentence"',
    "rerank": 'tokenwire rerank --top-n 2 --query "capital of France" "Paris is in France." "Berlin is in Germany."',
    "classify-image": "tokenwire classify-image --image cat.png cat dog car",
    "embed": 'tokenwire embed --normalize --text "a photo of a cat" --image cat.png',
}


def add_client_commands(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", default=DEFAULT_TARGET, help=f"server address (default {DEFAULT_TARGET})")
    common.add_argument("--json", action="store_true", help="print the response as proto3 JSON")
    common.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds (default 60)")
    common.add_argument("--tls", action="store_true", help="connect with TLS (system roots)")
    common.add_argument("--tls-ca", metavar="PEM", help="connect with TLS, trusting this CA")
    common.add_argument("--tls-cert", metavar="PEM", help="client certificate (mutual TLS)")
    common.add_argument("--tls-key", metavar="PEM", help="client private key (mutual TLS)")
    common.add_argument("--auth-token-file", metavar="FILE", help="send the bearer token in this file")

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name,
            parents=[common],
            help=help,
            description=help[0].upper() + help[1:] + ".",
            epilog="example:\n  " + EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=_run(func))
        return p

    p = command("models", _models, "list models, or show one")
    p.add_argument("model", nargs="?")
    p = command("tokenize", _tokenize, "tokenize text with a model's tokenizer")
    p.add_argument("--model", help="model name (default: the first ready model that does this)")
    p.add_argument("--no-special-tokens", action="store_true")
    p.add_argument("text")
    p = command("detokenize", _detokenize, "turn token ids back into text")
    p.add_argument("--model", help="model name (default: the first ready model that does this)")
    p.add_argument("--skip-special-tokens", action="store_true")
    p.add_argument("ids", nargs="+", type=int)
    p = command("generate", _generate, "generate text from a prompt")
    p.add_argument("--model", help="model name (default: the first ready model that does this)")
    _generation_options(p)
    p.add_argument("prompt")
    p = command("chat", _chat, "chat with a multimodal model about images")
    p.add_argument("--model", help="model name (default: the first ready model that does this)")
    p.add_argument("--image", action="append", help="image file (repeatable)")
    _generation_options(p)
    p.add_argument("text")
    p = command("fill-mask", _fill_mask, "predict the [MASK] tokens of a text")
    p.add_argument("--model", help="model name (default: the first ready model that does this)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--target-word", action="append", help="restrict candidates (repeatable)")
    p.add_argument("--truncate", action="store_true", help="cut a text over the model's limit")
    p.add_argument("text")
    p = command("next-sentence", _next_sentence, "does sentence B follow sentence A?")
    p.add_argument("--model", help="model name (default: the first ready model that does this)")
    p.add_argument("--truncate", action="store_true", help="cut a pair over the model's limit")
    p.add_argument("sentence_a")
    p.add_argument("sentence_b")
    p = command("answer", _answer, "extract an answer to a question from a context")
    p.add_argument("--model", help="model name (default: the first ready model that does this)")
    p.add_argument("--question", required=True)
    p.add_argument("--context", required=True)
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--max-answer-length", type=int, default=0, help="tokens (default 15)")
    p.add_argument("--doc-stride", type=int, default=0, help="window overlap in tokens (default 128)")
    p.add_argument(
        "--handle-impossible-answer", action="store_true", help="allow the empty answer when the model rates it best"
    )
    p = command("classify-text", _classify_text, "label texts or text pairs with a text classifier")
    p.add_argument("--model", help="model name (default: the first ready model that does this)")
    p.add_argument("--pair", action="append", help="second text of a pair, one per text, in order (repeatable)")
    p.add_argument("--top-k", type=int, default=0, help="labels per text (default: all)")
    p.add_argument(
        "--function", choices=["softmax", "sigmoid", "none"], help="logits to scores (default: the model's own)"
    )
    p.add_argument("--truncate", action="store_true", help="cut a text over the model's limit")
    p.add_argument("texts", nargs="+")
    p = command("classify-tokens", _classify_tokens, "tag the entities of a text with a token classifier")
    p.add_argument("--model", help="model name (default: the first ready model that does this)")
    p.add_argument(
        "--aggregation",
        choices=["none", "simple", "first", "average", "max"],
        help="group tokens into entities (default none: one per token)",
    )
    p.add_argument("--ignore-label", action="append", help='leave this label out (repeatable; default "O")')
    p.add_argument("--truncate", action="store_true", help="cut a text over the model's limit")
    p.add_argument("text")
    p = command("embed-text", _embed_text, "embed texts with a sentence embedding model")
    p.add_argument("--model", help="model name (default: the first ready model that does this)")
    p.add_argument(
        "--pooling", choices=["cls", "mean", "max", "last"], help="token vectors to one (default: the model's own)"
    )
    p.add_argument("--normalize", action="store_true", help="scale each vector to unit length")
    p.add_argument("--dimensions", type=int, default=0, help="keep the first N values (default: all)")
    p.add_argument("--truncate", action="store_true", help="cut a text over the model's limit")
    p.add_argument("texts", nargs="+")
    p = command("rerank", _rerank, "score documents by relevance to a query with a cross-encoder")
    p.add_argument("--model", help="model name (default: the first ready model that does this)")
    p.add_argument("--query", required=True)
    p.add_argument("--top-n", type=int, default=0, help="documents returned, best first (default: all)")
    p.add_argument("--raw-scores", action="store_true", help="the model's raw logits instead of its scores")
    p.add_argument("--truncate", action="store_true", help="cut a pair over the model's limit")
    p.add_argument("documents", nargs="+")
    p = command("classify-image", _classify_image, "zero-shot image classification")
    p.add_argument("--model", help="model name (default: the first ready model that does this)")
    p.add_argument("--image", required=True)
    p.add_argument("--hypothesis-template")
    p.add_argument("labels", nargs="+")
    p = command("embed", _embed, "embed texts and images")
    p.add_argument("--model", help="model name (default: the first ready model that does this)")
    p.add_argument("--text", action="append")
    p.add_argument("--image", action="append")
    p.add_argument("--normalize", action="store_true")
    p.add_argument("--truncate", action="store_true", help="cut a text over the model's limit")
