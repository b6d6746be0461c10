// One registration function per concern; module.cpp calls them.
#pragma once

#include <pybind11/pybind11.h>

namespace tokenwire::bindings {

void bind_params(pybind11::module_& m);
void bind_sampler(pybind11::module_& m);
void bind_beam(pybind11::module_& m);

}  // namespace tokenwire::bindings
