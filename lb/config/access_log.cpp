// [access_log]: where finished sessions are written, and how.

#include <fmt/format.h>

#include "config/build.hpp"
#include "config/toml_reader.hpp"

namespace fulcrum::config_detail {

AccessLogConfig buildAccessLog(const std::string& file, const toml::value& table) {
  TableReader reader(file, table, "[access_log]");
  reader.rejectUnknownKeys({"path", "format"});

  AccessLogConfig config;
  config.enabled = true;
  if (const std::string* path = reader.optionalString("path", "\"/var/log/fulcrum/access.log\"")) {
    const bool stream = *path == "stderr" || *path == "stdout";
    if (!stream && (path->empty() || (*path)[0] != '/')) {
      reader.fail(*reader.find("path"),
                  fmt::format("path \"{}\" is neither stderr, stdout nor an absolute file path; "
                              "write \"stderr\" or a path such as "
                              "\"/var/log/fulcrum/access.log\"",
                              *path));
    }
    config.path = *path;
  }
  config.format = reader.choice<AccessLogFormat>(
      "format", {{"logfmt", AccessLogFormat::Logfmt}, {"json", AccessLogFormat::Json}},
      config.format);
  return config;
}

}  // namespace fulcrum::config_detail
