#pragma once

// A linear pass over config text before toml11 sees it, refusing shapes that are never needed
// in a config but that toml11 3.7 handles badly: it parses nested arrays and inline tables by
// recursion (10,000 levels overflow the stack), and a dotted key of n parts costs it O(n^2)
// (50,000 parts take 40 s). The pass skips strings and comments, so their contents never count.

#include <cstddef>
#include <string>
#include <string_view>

namespace fulcrum::config_detail {

// Deepest nesting of [ and { allowed, table headers included ([[listener]] is 2).
inline constexpr size_t kMaxNesting = 32;

// Most parts allowed in one dotted key, such as a.b.c (3 parts).
inline constexpr size_t kMaxKeyParts = 16;

// Throws ConfigError("FILE:LINE:COLUMN: ...") at the first bracket past kMaxNesting or the
// first dot past kMaxKeyParts - 1 in one key. Columns count bytes from 1. Text that is not
// valid TOML is otherwise let through for toml11 to report.
void prescanToml(std::string_view text, const std::string& file);

}  // namespace fulcrum::config_detail
