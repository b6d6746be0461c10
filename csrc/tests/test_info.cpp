#include <gtest/gtest.h>

#include "tokenwire/info.h"

TEST(BuildInfo, NamesTheCore) {
  EXPECT_NE(tokenwire::build_info().find("tokenwire core"), std::string::npos);
}
