// Parameter structs, exposed field by field; tokenwire.decoding validates before filling them.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "tokenwire/beam.h"
#include "tokenwire/params.h"

namespace py = pybind11;

namespace tokenwire::bindings {

void bind_params(py::module_& m) {
  py::enum_<LogprobsMode>(m, "LogprobsMode")
      .value("PROCESSED", LogprobsMode::kProcessed)
      .value("RAW", LogprobsMode::kRaw);
  py::enum_<EarlyStopping>(m, "EarlyStopping")
      .value("HEURISTIC", EarlyStopping::kHeuristic)
      .value("TRUE", EarlyStopping::kTrue)
      .value("NEVER", EarlyStopping::kNever);

  py::class_<SamplingParams>(m, "SamplingParams")
      .def(py::init<>())
      .def_readwrite("logit_bias", &SamplingParams::logit_bias)
      .def_readwrite("repetition_penalty", &SamplingParams::repetition_penalty)
      .def_readwrite("frequency_penalty", &SamplingParams::frequency_penalty)
      .def_readwrite("presence_penalty", &SamplingParams::presence_penalty)
      .def_readwrite("no_repeat_ngram_size", &SamplingParams::no_repeat_ngram_size)
      .def_readwrite("bad_words", &SamplingParams::bad_words)
      .def_readwrite("min_new_tokens", &SamplingParams::min_new_tokens)
      .def_readwrite("eos_token_ids", &SamplingParams::eos_token_ids)
      .def_readwrite("temperature", &SamplingParams::temperature)
      .def_readwrite("top_k", &SamplingParams::top_k)
      .def_readwrite("top_p", &SamplingParams::top_p)
      .def_readwrite("min_p", &SamplingParams::min_p)
      .def_readwrite("typical_p", &SamplingParams::typical_p)
      .def_readwrite("greedy", &SamplingParams::greedy)
      .def_readwrite("seed", &SamplingParams::seed)
      .def_readwrite("stream", &SamplingParams::stream)
      .def_readwrite("logprobs", &SamplingParams::logprobs)
      .def_readwrite("top_logprobs", &SamplingParams::top_logprobs)
      .def_readwrite("logprobs_mode", &SamplingParams::logprobs_mode);

  py::class_<BeamParams>(m, "BeamParams")
      .def(py::init<>())
      .def_readwrite("num_beams", &BeamParams::num_beams)
      .def_readwrite("length_penalty", &BeamParams::length_penalty)
      .def_readwrite("early_stopping", &BeamParams::early_stopping)
      .def_readwrite("num_return_sequences", &BeamParams::num_return_sequences)
      .def_readwrite("max_new_tokens", &BeamParams::max_new_tokens)
      .def_readwrite("eos_token_ids", &BeamParams::eos_token_ids)
      .def_readwrite("edits", &BeamParams::edits);
}

}  // namespace tokenwire::bindings
