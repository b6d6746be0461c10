// BeamSearch objects plus a BeamStepper that owns the threads and scratch memory.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>

#include "arrays.h"
#include "bindings.h"
#include "tokenwire/beam.h"

namespace py = pybind11;

namespace tokenwire::bindings {

namespace {
struct BeamStepper {
  explicit BeamStepper(int n) : pool(std::make_unique<ThreadPool>(n)), ws(n) {}
  std::unique_ptr<ThreadPool> pool;
  std::vector<Workspace> ws;
  std::mutex mu;
};
}  // namespace

void bind_beam(py::module_& m) {
  py::class_<BeamSearch>(m, "BeamSearch")
      .def(py::init<const BeamParams&, std::vector<int32_t>, int64_t>(), py::arg("params"), py::arg("prompt"),
           py::arg("vocab_size"))
      .def_property_readonly("rows_expected", &BeamSearch::rows_expected)
      .def_property_readonly("done", &BeamSearch::done)
      .def_property_readonly("generated", &BeamSearch::generated)
      .def_property_readonly("num_beams", [](const BeamSearch& b) { return b.params().num_beams; })
      .def("hypotheses", [](const BeamSearch& b) {
        py::list out;
        for (const auto& h : b.hypotheses()) out.append(py::make_tuple(h.tokens, h.score, h.finished));
        return out;
      });

  py::class_<BeamStepper>(m, "BeamStepper")
      .def(py::init<int>(), py::arg("num_threads") = 1)
      .def_property_readonly("num_threads", [](BeamStepper& s) { return s.pool->size(); })
      .def(
          "step",
          [](BeamStepper& s, const std::vector<BeamSearch*>& searches, const py::handle& logits,
             const py::handle& parents, const py::handle& tokens, const py::handle& token_mask,
             const py::handle& mask_rows) {
            py::object keep;
            const LogitsView v = py_adapters::logits_view(logits, keep);
            py::ssize_t n = 0;
            for (auto* b : searches) n += b->params().num_beams;
            int32_t* p = py_adapters::output<int32_t>(parents, "parents", {n});
            int32_t* t = py_adapters::output<int32_t>(tokens, "tokens", {n});
            const TokenMask mask = py_adapters::token_mask(token_mask, mask_rows, v.rows);
            py::gil_scoped_release release;
            std::lock_guard<std::mutex> lock(s.mu);
            step_beams(searches, v, *s.pool, s.ws, p, t, mask);
          },
          py::arg("searches"), py::arg("logits"), py::arg("parents"), py::arg("tokens"),
          py::arg("token_mask") = py::none(), py::arg("mask_rows") = py::none(),
          "Steps every search once; logits rows are each search's rows_expected rows, in order.");
}

}  // namespace tokenwire::bindings
