// BatchSampler: checks every argument under the GIL, then runs the step without it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>

#include "arrays.h"
#include "bindings.h"
#include "tokenwire/batch_sampler.h"

namespace py = pybind11;

namespace tokenwire::bindings {

namespace {
// Calls on one sampler are serialised: a step runs without the GIL, so another Python thread
// could otherwise add or remove rows under it.
struct PyBatchSampler {
  PyBatchSampler(int64_t vocab_size, int num_threads) : core(vocab_size, num_threads) {}
  BatchSampler core;
  std::mutex mu;
};

const int32_t* slot_array(const py::array_t<int32_t, py::array::c_style>& slots, int64_t rows) {
  if (slots.ndim() != 1 || slots.shape(0) != rows) {
    throw py::value_error("slots must be 1-D with one entry per logits row (" + std::to_string(rows) + ")");
  }
  return slots.data();
}
}  // namespace

void bind_sampler(py::module_& m) {
  py::class_<PyBatchSampler>(m, "BatchSampler")
      .def(py::init<int64_t, int>(), py::arg("vocab_size"), py::arg("num_threads") = 1)
      .def_property_readonly("vocab_size", [](PyBatchSampler& s) { return s.core.vocab_size(); })
      .def_property(
          "num_threads", [](PyBatchSampler& s) { return s.core.num_threads(); },
          [](PyBatchSampler& s, int n) {
            std::lock_guard<std::mutex> lock(s.mu);
            s.core.set_num_threads(n);
          })
      .def("add",
           [](PyBatchSampler& s, const SamplingParams& p, std::vector<int32_t> prompt) {
             std::lock_guard<std::mutex> lock(s.mu);
             return s.core.add(p, std::move(prompt));
           })
      .def("remove",
           [](PyBatchSampler& s, int32_t slot) {
             std::lock_guard<std::mutex> lock(s.mu);
             s.core.remove(slot);
           })
      .def("append",
           [](PyBatchSampler& s, int32_t slot, const std::vector<int32_t>& tokens) {
             std::lock_guard<std::mutex> lock(s.mu);
             s.core.append(slot, tokens.data(), static_cast<int64_t>(tokens.size()));
           })
      .def("generated", [](PyBatchSampler& s, int32_t slot) { return s.core.generated(slot); })
      .def("stage_names", [](PyBatchSampler& s, int32_t slot) { return s.core.stage_names(slot); })
      .def(
          "step",
          [](PyBatchSampler& s, const py::handle& logits, const py::array_t<int32_t, py::array::c_style>& slots,
             const py::handle& token_ids, const py::handle& logprobs, const py::handle& ranks,
             const py::handle& top_ids, const py::handle& top_logprobs, bool advance, const py::handle& token_mask,
             const py::handle& mask_rows) {
            py::object keep;
            const LogitsView v = py_adapters::logits_view(logits, keep);
            const py::ssize_t rows = v.rows;
            StepOutputs out;
            out.token_ids = py_adapters::output<int32_t>(token_ids, "token_ids", {rows});
            out.logprobs = py_adapters::output<float>(logprobs, "logprobs", {rows});
            out.ranks = py_adapters::output<int32_t>(ranks, "ranks", {rows});
            const auto n = py::reinterpret_borrow<py::array>(top_ids).ndim() == 2
                               ? py::reinterpret_borrow<py::array>(top_ids).shape(1)
                               : 0;
            out.top_n = static_cast<int32_t>(n);
            out.top_ids = py_adapters::output<int32_t>(top_ids, "top_ids", {rows, n});
            out.top_logprobs = py_adapters::output<float>(top_logprobs, "top_logprobs", {rows, n});
            const int32_t* sl = slot_array(slots, rows);
            const TokenMask mask = py_adapters::token_mask(token_mask, mask_rows, rows);
            py::gil_scoped_release release;
            std::lock_guard<std::mutex> lock(s.mu);
            s.core.step(v, sl, out, advance, mask);
          },
          py::arg("logits"), py::arg("slots"), py::arg("token_ids"), py::arg("logprobs"), py::arg("ranks"),
          py::arg("top_ids"), py::arg("top_logprobs"), py::arg("advance") = true, py::arg("token_mask") = py::none(),
          py::arg("mask_rows") = py::none(),
          "One decode step for the rows `slots`; writes the caller-allocated outputs.")
      .def(
          "process",
          [](PyBatchSampler& s, const py::handle& logits, const py::array_t<int32_t, py::array::c_style>& slots,
             const py::handle& out, const py::handle& token_mask, const py::handle& mask_rows) {
            py::object keep;
            const LogitsView v = py_adapters::logits_view(logits, keep);
            float* o = py_adapters::output<float>(out, "out", {v.rows, v.vocab});
            const int32_t* sl = slot_array(slots, v.rows);
            const TokenMask mask = py_adapters::token_mask(token_mask, mask_rows, v.rows);
            py::gil_scoped_release release;
            std::lock_guard<std::mutex> lock(s.mu);
            s.core.process(v, sl, o, v.vocab, mask);
          },
          py::arg("logits"), py::arg("slots"), py::arg("out"), py::arg("token_mask") = py::none(),
          py::arg("mask_rows") = py::none());
}

}  // namespace tokenwire::bindings
