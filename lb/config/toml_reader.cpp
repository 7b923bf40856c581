#include "config/toml_reader.hpp"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace fulcrum::config_detail {

namespace {

std::string lowered(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Optimal string alignment distance: Levenshtein plus adjacent transpositions, so the
// classic typo "wrokers" is one edit away from "workers".
size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) {
    d[i][0] = i;
  }
  for (size_t j = 0; j <= b.size(); ++j) {
    d[0][j] = j;
  }

  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string suggestion(std::string_view word, std::span<const std::string_view> candidates) {
  const std::string_view near = nearest(word, candidates);
  if (near.empty()) {
    return {};
  }
  return fmt::format("did you mean \"{}\"? ", near);
}

// "2s" rather than "2000ms" when the value is a whole number of a larger unit.
std::string durationText(Millis value) {
  const int64_t ms = value.count();
  if (ms != 0 && ms % 3600000 == 0) {
    return fmt::format("{}h", ms / 3600000);
  }
  if (ms != 0 && ms % 60000 == 0) {
    return fmt::format("{}m", ms / 60000);
  }
  if (ms % 1000 == 0) {
    return fmt::format("{}s", ms / 1000);
  }
  return fmt::format("{}ms", ms);
}

}  // namespace

std::string locationOf(const std::string& file, const toml::value& value) {
  const toml::source_location loc = value.location();
  return fmt::format("{}:{}:{}", file, loc.line(), loc.column());
}

void failAt(const std::string& file, const toml::value& at, const std::string& message) {
  throw ConfigError(fmt::format("{}: {}", locationOf(file, at), message));
}

std::string_view typeName(const toml::value& value) {
  switch (value.type()) {
    case toml::value_t::empty:
      return "empty";
    case toml::value_t::boolean:
      return "a boolean";
    case toml::value_t::integer:
      return "an integer";
    case toml::value_t::floating:
      return "a float";
    case toml::value_t::string:
      return "a string";
    case toml::value_t::offset_datetime:
    case toml::value_t::local_datetime:
      return "a date-time";
    case toml::value_t::local_date:
      return "a date";
    case toml::value_t::local_time:
      return "a time";
    case toml::value_t::array:
      return "an array";
    case toml::value_t::table:
      return "a table";
  }
  return "an unknown type";
}

std::string literalText(const toml::value& value) {
  const toml::source_location loc = value.location();
  const std::string& line = loc.line_str();
  const size_t start = loc.column() - 1;
  if (start >= line.size()) {
    return toml::format(value);
  }
  return line.substr(start, loc.region());
}

std::string_view nearest(std::string_view word, std::span<const std::string_view> candidates) {
  const std::string lower_word = lowered(word);
  std::string_view best;
  size_t best_distance = SIZE_MAX;

  for (std::string_view candidate : candidates) {
    const std::string lower_candidate = lowered(candidate);
    if (lower_candidate == lower_word) {
      return candidate;
    }
    const size_t shorter = std::min(lower_word.size(), lower_candidate.size());
    const bool prefix = shorter >= 3 && lower_word.compare(0, shorter, lower_candidate, 0,
                                                           shorter) == 0;
    const size_t distance = prefix ? 1 : editDistance(lower_word, lower_candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }

  // Allow one edit per three characters, at most two: beyond that the "suggestion" is more
  // often a different word than a typo.
  const size_t allowed = std::clamp<size_t>(word.size() / 3, 1, 2);
  if (best_distance > allowed) {
    return {};
  }
  return best;
}

std::string joinNames(std::span<const std::string_view> names) {
  return fmt::format("{}", fmt::join(names, ", "));
}

std::vector<std::pair<std::string, const toml::value*>> inSourceOrder(const toml::value& table) {
  std::vector<std::pair<std::string, const toml::value*>> entries;
  for (const auto& [key, value] : table.as_table()) {
    entries.emplace_back(key, &value);
  }

  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    const toml::source_location la = a.second->location();
    const toml::source_location lb = b.second->location();
    if (la.line() != lb.line()) {
      return la.line() < lb.line();
    }
    if (la.column() != lb.column()) {
      return la.column() < lb.column();
    }
    return a.first < b.first;
  });
  return entries;
}

bool isValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '.' || c == '-';
  });
}

TableReader::TableReader(const std::string& file, const toml::value& table, std::string context)
    : file_(file), table_(table), context_(std::move(context)) {}

void TableReader::rejectUnknownKeys(std::initializer_list<std::string_view> allowed) const {
  const std::span<const std::string_view> names(allowed.begin(), allowed.size());
  const auto known = [&](const std::string& key) {
    return std::find(names.begin(), names.end(), key) != names.end();
  };

  // The common case first, without locations: toml11 finds a value's line number by counting
  // newlines from the start of the file, which would make a 4096-backend pool quadratic.
  const auto& table = table_.as_table();
  if (std::all_of(table.begin(), table.end(), [&](const auto& kv) { return known(kv.first); })) {
    return;
  }

  for (const auto& [key, value] : inSourceOrder(table_)) {
    if (known(key)) {
      continue;
    }
    failAt(file_, *value,
           fmt::format("unknown key \"{}\" in {}; {}allowed keys: {}", key, context_,
                       suggestion(key, names), joinNames(names)));
  }
}

const toml::value* TableReader::find(std::string_view key) const {
  const auto& table = table_.as_table();
  const auto it = table.find(std::string(key));
  if (it == table.end()) {
    return nullptr;
  }
  return &it->second;
}

const toml::value& TableReader::requireString(std::string_view key,
                                              std::string_view example) const {
  const toml::value* value = find(key);
  if (value == nullptr) {
    fail(table_, fmt::format("missing required key \"{}\"; add it, such as {}", key, example));
  }
  if (!value->is_string()) {
    failType(key, *value, fmt::format("a string, such as {}", example));
  }
  return *value;
}

uint32_t TableReader::integer(std::string_view key, int64_t min, int64_t max, uint32_t fallback,
                              std::string_view note) const {
  const toml::value* value = find(key);
  if (value == nullptr) {
    return fallback;
  }

  const std::string expected =
      fmt::format("an integer from {} to {}{}{}", min, max, note.empty() ? "" : " ", note);
  if (!value->is_integer()) {
    failType(key, *value, expected);
  }

  // literalText rather than the stored number: toml11 clamps huge literals to INT64_MAX.
  const int64_t number = value->as_integer();
  if (number < min || number > max) {
    fail(*value, fmt::format("{} = {} is out of range; expected {}", key, literalText(*value),
                             expected));
  }
  return static_cast<uint32_t>(number);
}

bool TableReader::boolean(std::string_view key, bool fallback) const {
  const toml::value* value = find(key);
  if (value == nullptr) {
    return fallback;
  }
  if (!value->is_boolean()) {
    failType(key, *value, "true or false");
  }
  return value->as_boolean();
}

Millis TableReader::duration(std::string_view key, Millis fallback, bool positive) const {
  const toml::value* value = find(key);
  if (value == nullptr) {
    return fallback;
  }

  const std::string example = durationText(fallback);
  const std::string& text =
      stringOrFail(key, *value, fmt::format("a duration string such as \"{}\"", example));
  std::string error;
  const std::optional<Millis> parsed = parseDuration(text, &error);
  if (!parsed) {
    fail(*value, fmt::format("{} {}", key, error));
  }
  if (positive && parsed->count() == 0) {
    fail(*value, fmt::format("{} \"{}\" is zero; it must be greater than zero, such as \"{}\"",
                             key, text, example));
  }
  return *parsed;
}

const std::string* TableReader::optionalString(std::string_view key,
                                               std::string_view example) const {
  const toml::value* value = find(key);
  if (value == nullptr) {
    return nullptr;
  }
  return &stringOrFail(key, *value, fmt::format("a string such as {}", example));
}

void TableReader::fail(const toml::value& at, const std::string& message) const {
  failAt(file_, at, fmt::format("{}: {}", context_, message));
}

const std::string& TableReader::stringOrFail(std::string_view key, const toml::value& value,
                                             std::string_view expected) const {
  if (!value.is_string()) {
    failType(key, value, expected);
  }
  return value.as_string().str;
}

void TableReader::failType(std::string_view key, const toml::value& value,
                           std::string_view expected) const {
  fail(value, fmt::format("{} is {}; expected {}", key, typeName(value), expected));
}

void TableReader::failUnknownChoice(std::string_view key, const toml::value& value,
                                    const std::string& text,
                                    std::span<const std::string_view> names) const {
  fail(value, fmt::format("{} \"{}\" is not supported; {}expected one of {}", key, text,
                          suggestion(text, names), joinNames(names)));
}

}  // namespace fulcrum::config_detail
