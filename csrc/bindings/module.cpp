// pybind11 glue only: argument checks, GIL release and zero-copy views live here; the
// algorithms live in src/ with no Python in their headers.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "tokenwire/info.h"

namespace py = pybind11;

#ifndef TOKENWIRE_VERSION
#define TOKENWIRE_VERSION "dev"
#endif

PYBIND11_MODULE(_core, m) {
  m.doc() = "tokenwire's C++ decoding core (private: use tokenwire.decoding)";
  m.attr("__version__") = TOKENWIRE_VERSION;
  m.def("build_info", &tokenwire::build_info, "How the core was compiled.");
  tokenwire::bindings::bind_params(m);
  tokenwire::bindings::bind_sampler(m);
  tokenwire::bindings::bind_beam(m);
}
