// [pool.NAME.health] and a backend's `health = { ... }` overrides, into HealthCheckConfig.

#include <cctype>

#include <fmt/format.h>

#include "config/build.hpp"
#include "config/toml_reader.hpp"

namespace fulcrum::config_detail {

namespace {

constexpr uint32_t kMaxRiseFall = 100;
constexpr uint32_t kMaxPassiveFailures = 1000;
constexpr size_t kMaxProbeBytes = 4096;  // send / expect payloads.
constexpr uint16_t kMinStatus = 100;
constexpr uint16_t kMaxStatus = 599;

// Keys each probe kind reads; any other probe key under that kind is refused, so an option
// the operator wrote never silently does nothing.
constexpr std::string_view kTimingKeys[] = {"interval", "fast_interval", "timeout", "rise",
                                            "fall",     "jitter",        "address", "port"};
constexpr std::string_view kPayloadKeys[] = {"send", "send_hex", "expect", "expect_hex", "match"};
constexpr std::string_view kHttpKeys[] = {"method", "path", "host", "status", "body"};

bool contains(std::span<const std::string_view> keys, std::string_view key) {
  for (std::string_view k : keys) {
    if (k == key) {
      return true;
    }
  }
  return false;
}

std::optional<std::string> parseHex(std::string_view text, std::string* error) {
  std::string out;
  int high = -1;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' || c == '\t' || c == ':') {
      if (high >= 0) {
        *error = fmt::format("an odd digit before position {}", i + 1);
        return std::nullopt;
      }
      continue;
    }
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else {
      *error = fmt::format("'{}' at position {} is not a hex digit", c, i + 1);
      return std::nullopt;
    }
    if (high < 0) {
      high = v;
    } else {
      out.push_back(static_cast<char>(high * 16 + v));
      high = -1;
    }
  }
  if (high >= 0) {
    *error = "it has an odd number of hex digits";
    return std::nullopt;
  }
  return out;
}

// One of `text_key` (a string, TOML escapes apply) or `hex_key` (hex digits), or nothing.
std::optional<std::string> readPayload(const TableReader& reader, std::string_view text_key,
                                       std::string_view hex_key) {
  const toml::value* text = reader.find(text_key);
  const toml::value* hex = reader.find(hex_key);
  if (text != nullptr && hex != nullptr) {
    reader.fail(*hex, fmt::format("{} and {} are both set; keep one", text_key, hex_key));
  }
  std::string value;
  const toml::value* at = text != nullptr ? text : hex;
  if (text != nullptr) {
    value = *reader.optionalString(text_key, "\"PING\\r\\n\"");
  } else if (hex != nullptr) {
    const std::string& digits = *reader.optionalString(hex_key, "\"0d0a\"");
    std::string error;
    std::optional<std::string> bytes = parseHex(digits, &error);
    if (!bytes) {
      reader.fail(*hex, fmt::format("{} is not hex: {}; write pairs of digits such as "
                                    "\"50494e470d0a\"",
                                    hex_key, error));
    }
    value = std::move(*bytes);
  } else {
    return std::nullopt;
  }
  if (value.size() > kMaxProbeBytes) {
    reader.fail(*at, fmt::format("{} is {} bytes; at most {} are allowed", text != nullptr ?
                                 text_key : hex_key, value.size(), kMaxProbeBytes));
  }
  return value;
}

// "GET", "HEAD", ...: an HTTP token in capitals.
bool isMethod(std::string_view m) {
  if (m.empty() || m.size() > 16) {
    return false;
  }
  for (char c : m) {
    if (c < 'A' || c > 'Z') {
      return false;
    }
  }
  return true;
}

// Printable ASCII without spaces: nothing that could break the request line or a header.
bool isRequestText(std::string_view text) {
  for (char c : text) {
    if (c <= ' ' || c > '~') {
      return false;
    }
  }
  return true;
}

std::vector<StatusRange> readStatus(const TableReader& reader, const toml::value& value) {
  constexpr std::string_view kExample = "status = [\"200-299\", 503]";
  if (!value.is_array() || value.as_array().empty()) {
    reader.fail(value, fmt::format("status is {}; expected a non-empty array of codes or "
                                   "ranges, such as {}",
                                   value.is_array() ? "empty" : typeName(value), kExample));
  }
  std::vector<StatusRange> ranges;
  for (const toml::value& entry : value.as_array()) {
    StatusRange range;
    if (entry.is_integer()) {
      const int64_t code = entry.as_integer();
      if (code < kMinStatus || code > kMaxStatus) {
        reader.fail(entry, fmt::format("status {} is not an HTTP status; use {}..{}",
                                       literalText(entry), kMinStatus, kMaxStatus));
      }
      range.low = range.high = static_cast<uint16_t>(code);
    } else if (entry.is_string()) {
      const std::string& text = entry.as_string().str;
      unsigned low = 0;
      unsigned high = 0;
      char dash = 0;
      int used = 0;
      if (std::sscanf(text.c_str(), "%3u%c%3u%n", &low, &dash, &high, &used) != 3 ||
          dash != '-' || static_cast<size_t>(used) != text.size() || low < kMinStatus ||
          high > kMaxStatus || low > high) {
        reader.fail(entry, fmt::format("status \"{}\" is not a range of HTTP statuses; write "
                                       "\"LOW-HIGH\" within {}..{}, such as \"200-299\"",
                                       text, kMinStatus, kMaxStatus));
      }
      range.low = static_cast<uint16_t>(low);
      range.high = static_cast<uint16_t>(high);
    } else {
      reader.fail(entry, fmt::format("status entry is {}; expected a code or a range, such as "
                                     "{}",
                                     typeName(entry), kExample));
    }
    ranges.push_back(range);
  }
  return ranges;
}

// The timing and target keys, shared by the pool table and a backend's overrides; each
// absent key keeps the value already in out.
void readTiming(const TableReader& reader, HealthDefaults& out) {
  HealthCheckConfig& health = out.health;
  health.interval = reader.duration("interval", health.interval, /*positive=*/true);
  // fast_interval follows interval unless it was written, here or in the pool's table.
  if (reader.find("fast_interval") != nullptr) {
    health.fast_interval = reader.duration("fast_interval", health.fast_interval, true);
    out.fast_interval_set = true;
  } else if (!out.fast_interval_set) {
    health.fast_interval = health.interval;
  }
  health.timeout = reader.duration("timeout", health.timeout, true);
  health.jitter = reader.duration("jitter", health.jitter, false);
  health.rise = reader.integer("rise", 1, kMaxRiseFall, health.rise);
  health.fall = reader.integer("fall", 1, kMaxRiseFall, health.fall);
  out.port = reader.integer("port", 0, 65535, out.port, "(0 = the backend's port)");
  if (const std::string* text = reader.optionalString("address", "\"127.0.0.1\"")) {
    out.address = *text;
    out.address_at = reader.find("address");
  }

  const toml::value* at = reader.find("timeout");
  if (at == nullptr) {
    at = reader.find("interval");
  }
  if (at != nullptr && health.timeout > health.interval) {
    reader.fail(*at, fmt::format("timeout {}ms is longer than interval {}ms; a probe must end "
                                 "before the next one starts: lower timeout or raise interval",
                                 health.timeout.count(), health.interval.count()));
  }
}

}  // namespace

HealthDefaults buildHealth(const std::string& file, const toml::value& table,
                           const std::string& context) {
  TableReader reader(file, table, context);
  reader.rejectUnknownKeys({"type", "interval", "fast_interval", "timeout", "rise", "fall",
                            "jitter", "address", "port", "send", "send_hex", "expect",
                            "expect_hex", "match", "method", "path", "host", "status", "body",
                            "passive_failures", "passive_cooldown"});

  HealthDefaults out;
  HealthCheckConfig& health = out.health;
  health.type = reader.choice<HealthCheckType>("type",
                                               {{"none", HealthCheckType::None},
                                                {"tcp", HealthCheckType::Tcp},
                                                {"tcp_expect", HealthCheckType::TcpExpect},
                                                {"http", HealthCheckType::Http},
                                                {"udp_expect", HealthCheckType::UdpExpect}},
                                               health.type);

  // Refuse keys that the chosen kind would ignore.
  const char* type_name = toString(health.type);
  for (const auto& [key, value] : inSourceOrder(table)) {
    const bool timing = contains(kTimingKeys, key);
    const bool payload = contains(kPayloadKeys, key);
    const bool http = contains(kHttpKeys, key);
    if (health.type == HealthCheckType::None && (timing || payload || http)) {
      reader.fail(*value, fmt::format("{} has no effect without an active check; set type to "
                                      "tcp, tcp_expect, http or udp_expect, or remove it",
                                      key));
    }
    const bool wants_payload = health.type == HealthCheckType::TcpExpect ||
                               health.type == HealthCheckType::UdpExpect;
    if (payload && !wants_payload) {
      reader.fail(*value, fmt::format("{} applies to type tcp_expect or udp_expect, not {}; "
                                      "remove it or change type",
                                      key, type_name));
    }
    if (http && health.type != HealthCheckType::Http) {
      reader.fail(*value, fmt::format("{} applies to type http, not {}; remove it or change "
                                      "type",
                                      key, type_name));
    }
  }

  readTiming(reader, out);

  if (std::optional<std::string> send = readPayload(reader, "send", "send_hex")) {
    health.send = std::move(*send);
  }
  if (std::optional<std::string> expect = readPayload(reader, "expect", "expect_hex")) {
    health.expect = std::move(*expect);
  }
  health.match = reader.choice<ExpectMatch>("match",
                                            {{"contains", ExpectMatch::Contains},
                                             {"prefix", ExpectMatch::Prefix},
                                             {"exact", ExpectMatch::Exact}},
                                            health.match);
  if (health.type == HealthCheckType::TcpExpect && health.expect.empty()) {
    reader.fail(table, "type tcp_expect needs expect (or expect_hex): the bytes a healthy "
                       "answer contains, such as expect = \"role:master\"");
  }
  if (health.type == HealthCheckType::UdpExpect && health.send.empty()) {
    reader.fail(table, "type udp_expect needs send (or send_hex): the datagram that asks the "
                       "backend for an answer, such as a DNS query in send_hex");
  }

  if (const std::string* method = reader.optionalString("method", "\"GET\"")) {
    if (!isMethod(*method)) {
      reader.fail(*reader.find("method"), fmt::format("method \"{}\" is not an HTTP method; "
                                                      "use capitals such as \"GET\" or "
                                                      "\"HEAD\"",
                                                      *method));
    }
    health.http_method = *method;
  }
  if (const std::string* path = reader.optionalString("path", "\"/health\"")) {
    if (path->empty() || (*path)[0] != '/' || !isRequestText(*path)) {
      reader.fail(*reader.find("path"), fmt::format("path \"{}\" must start with / and contain "
                                                    "no spaces or control characters",
                                                    *path));
    }
    health.http_path = *path;
  }
  if (const std::string* host = reader.optionalString("host", "\"db.example\"")) {
    if (host->empty() || !isRequestText(*host)) {
      reader.fail(*reader.find("host"), fmt::format("host \"{}\" must be non-empty without "
                                                    "spaces or control characters",
                                                    *host));
    }
    health.http_host = *host;
  }
  if (const toml::value* status = reader.find("status")) {
    health.http_status = readStatus(reader, *status);
  }
  if (const std::string* body = reader.optionalString("body", "\"ok\"")) {
    health.http_body = *body;
  }

  health.passive_failures = reader.integer("passive_failures", 0, kMaxPassiveFailures,
                                           health.passive_failures, "(0 = off)");
  health.passive_cooldown = reader.duration("passive_cooldown", health.passive_cooldown, true);
  if (const toml::value* cooldown = reader.find("passive_cooldown");
      cooldown != nullptr && health.type != HealthCheckType::None) {
    reader.fail(*cooldown, fmt::format("passive_cooldown applies only without an active check "
                                       "(type = \"none\"); with type {} probes bring a "
                                       "passively downed backend back: remove it",
                                       type_name));
  }
  return out;
}

void applyHealthOverrides(const std::string& file, const toml::value* overrides,
                          const std::string& context, const Endpoint& backend,
                          const HealthDefaults& defaults, HealthCheckConfig& health) {
  HealthDefaults resolved = defaults;

  if (overrides != nullptr) {
    TableReader reader(file, *overrides, context);
    if (!overrides->is_table()) {
      reader.fail(*overrides, fmt::format("health is {}; expected an inline table such as "
                                          "health = {{ port = 8008, interval = \"1s\" }}",
                                          typeName(*overrides)));
    }
    reader.rejectUnknownKeys({"interval", "fast_interval", "timeout", "rise", "fall", "jitter",
                              "address", "port"});
    if (defaults.health.type == HealthCheckType::None && !overrides->as_table().empty()) {
      reader.fail(*overrides, "health overrides have no effect: the pool has no active check; "
                              "add a [pool.NAME.health] table with a type, or remove them");
    }
    readTiming(reader, resolved);
  }

  // The probe target: the backend's endpoint with the address and port overrides applied.
  const std::string ip = resolved.address.value_or(backend.ipString());
  const uint16_t port = resolved.port != 0 ? static_cast<uint16_t>(resolved.port)
                                           : backend.port();
  const bool v6 = ip.find(':') != std::string::npos;
  const std::string text = v6 ? fmt::format("[{}]:{}", ip, port) : fmt::format("{}:{}", ip, port);
  std::string error;
  const std::optional<Endpoint> target = Endpoint::parse(text, &error);
  if (!target || target->ipString() == "0.0.0.0" || target->ipString() == "::") {
    // Only a written address can be unusable; the backend's own was checked already.
    failAt(file, *resolved.address_at,
           fmt::format("{}: health address \"{}\" is not a usable IP address; write an IPv4 or "
                       "IPv6 address without a port, such as \"127.0.0.1\"",
                       context, ip));
  }
  resolved.health.target = *target;
  health = std::move(resolved.health);
}

}  // namespace fulcrum::config_detail
