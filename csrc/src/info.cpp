#include "tokenwire/info.h"

namespace tokenwire {

std::string build_info() {
  std::string info = "tokenwire core, C++" + std::to_string(__cplusplus / 100 % 100);
#if defined(__clang__)
  info += ", clang " __clang_version__;
#elif defined(__GNUC__)
  info += ", gcc " __VERSION__;
#endif
#ifdef NDEBUG
  info += ", optimised";
#else
  info += ", debug";
#endif
  return info;
}

}  // namespace tokenwire
