// Zero-copy views of Python arrays, checked loudly at the boundary.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "tokenwire/logits.h"
#include "tokenwire/token_mask.h"

namespace tokenwire::py_adapters {

namespace py = pybind11;

// A [rows, vocab] logits view of any object with __dlpack__ (numpy arrays, torch CPU tensors)
// of float32 / bfloat16 / float16, contiguous along the vocabulary. `keepalive` holds the
// exported capsule; the view is valid while it lives. Throws TypeError / ValueError.
LogitsView logits_view(const py::handle& obj, py::object& keepalive);

// A token-mask view (token_mask.h) of `token_mask` (None, or a C-contiguous numpy int32 array
// [rows, words]) and `mask_rows` (None: every row masked, or a numpy bool array [rows]). The
// arrays must outlive the view (the caller's arguments do). Throws TypeError / ValueError; the
// words-per-row and empty-row checks are the core's (check_token_mask), as they need its limit.
TokenMask token_mask(const py::handle& token_mask, const py::handle& mask_rows, int64_t rows);

// A caller-allocated, writeable, C-contiguous numpy output of dtype T and exact `shape`.
template <class T>
T* output(const py::handle& obj, const char* name, const std::vector<py::ssize_t>& shape) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a numpy array");
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>())) {
    throw py::type_error(std::string(name) + " must have dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(a.dtype())));
  }
  if (!(a.flags() & py::array::c_style) || !a.writeable()) {
    throw py::value_error(std::string(name) + " must be C-contiguous and writeable");
  }
  bool same = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; same && i < shape.size(); ++i) same = a.shape(i) == shape[i];
  if (!same) {
    std::string want = "(";
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    throw py::value_error(std::string(name) + " must have shape " + want + (shape.size() == 1 ? ",)" : ")"));
  }
  return static_cast<T*>(a.mutable_data());
}

}  // namespace tokenwire::py_adapters
