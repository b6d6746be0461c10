// Build information of the decoding core.
#pragma once

#include <string>

namespace tokenwire {

// Describes how the core was compiled (compiler, optimisation), for GetModelInfo and bug reports.
std::string build_info();

}  // namespace tokenwire
