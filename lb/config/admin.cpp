// [admin]: where the admin endpoint listens and how it is protected.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "config/build.hpp"
#include "config/toml_reader.hpp"

namespace fulcrum::config_detail {

namespace {

// A token shorter than this is guessable by a loop over loopback in minutes.
constexpr size_t kMinTokenChars = 16;
constexpr size_t kMaxTokenChars = 256;
// A token file is one line; anything bigger is the wrong file.
constexpr size_t kMaxTokenFileBytes = 4096;

constexpr std::string_view kTokenHow =
    "add token = \"...\" or token_file = \"/etc/fulcrum/admin.token\" (at least 16 "
    "characters, such as the output of `openssl rand -hex 16`)";

// Checks a token's characters and length; returns an empty string or what is wrong.
std::string tokenProblem(std::string_view token) {
  if (token.size() < kMinTokenChars) {
    return fmt::format("is {} characters long; use at least {}", token.size(), kMinTokenChars);
  }
  if (token.size() > kMaxTokenChars) {
    return fmt::format("is {} characters long; use at most {}", token.size(), kMaxTokenChars);
  }
  // It travels in an HTTP header, where spaces and control characters would split or end it.
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return "contains a space, a control or a non-ASCII character; use printable ASCII only";
    }
  }
  return {};
}

std::string_view trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t\r\n";
  const size_t begin = text.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) {
    return {};
  }
  const size_t end = text.find_last_not_of(kSpace);
  return text.substr(begin, end - begin + 1);
}

// The token file's contents, trimmed. Fails at the token_file value with errno's text.
std::string readTokenFile(const TableReader& reader, const toml::value& at,
                          const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    reader.fail(at, fmt::format("token_file \"{}\": cannot read: {}; give the path of a file "
                                "holding the token",
                                path, std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    reader.fail(at, fmt::format("token_file \"{}\" is not a regular file; give the path of a "
                                "file holding the token",
                                path));
  }

  std::string text;
  char buf[1024];
  while (text.size() <= kMaxTokenFileBytes) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (text.size() > kMaxTokenFileBytes) {
    reader.fail(at, fmt::format("token_file \"{}\" is over {} bytes; it should hold the token "
                                "only",
                                path, kMaxTokenFileBytes));
  }
  return std::string(trim(text));
}

void readToken(const TableReader& reader, AdminConfig& admin) {
  const toml::value* token = reader.find("token");
  const toml::value* token_file = reader.find("token_file");
  if (token != nullptr && token_file != nullptr) {
    reader.fail(*token_file, "token and token_file are both set; keep one of them");
  }

  if (token != nullptr) {
    admin.token = *reader.optionalString("token", "\"3f9c...\"");
    const std::string problem = tokenProblem(admin.token);
    if (!problem.empty()) {
      reader.fail(*token, "token " + problem);
    }
  }
  if (token_file != nullptr) {
    const std::string& path = *reader.optionalString("token_file", "\"/etc/fulcrum/admin.token\"");
    admin.token = readTokenFile(reader, *token_file, path);
    if (admin.token.empty()) {
      reader.fail(*token_file, fmt::format("token_file \"{}\" is empty; write the token into it",
                                           path));
    }
    const std::string problem = tokenProblem(admin.token);
    if (!problem.empty()) {
      reader.fail(*token_file, fmt::format("the token in token_file \"{}\" {}", path, problem));
    }
  }
}

}  // namespace

AdminConfig buildAdmin(const std::string& file, const toml::value& table) {
  TableReader reader(file, table, "[admin]");
  reader.rejectUnknownKeys({"listen", "socket", "token", "token_file", "max_body",
                            "max_connections", "request_timeout"});
  AdminConfig admin;

  if (const std::string* listen = reader.optionalString("listen", "\"127.0.0.1:9901\"")) {
    std::string error;
    admin.listen = Endpoint::parse(*listen, &error);
    if (!admin.listen) {
      reader.fail(*reader.find("listen"), fmt::format("listen \"{}\": {}", *listen, error));
    }
  }

  if (const std::string* socket = reader.optionalString("socket", "\"/run/fulcrum/admin.sock\"")) {
    const toml::value& at = *reader.find("socket");
    if (socket->empty() || (*socket)[0] != '/') {
      reader.fail(at, fmt::format("socket \"{}\" is not an absolute path; write one such as "
                                  "\"/run/fulcrum/admin.sock\"",
                                  *socket));
    }
    // sun_path holds the path and its terminating NUL.
    if (socket->size() >= sizeof(sockaddr_un::sun_path)) {
      reader.fail(at, fmt::format("socket path is {} bytes long; unix socket paths must be "
                                  "shorter than {} bytes",
                                  socket->size(), sizeof(sockaddr_un::sun_path)));
    }
    admin.socket = *socket;
  }

  if (!admin.enabled()) {
    reader.fail(table, "neither listen nor socket is set, so the admin endpoint would stay off; "
                       "add listen = \"127.0.0.1:9901\" or socket = \"/run/fulcrum/admin.sock\", "
                       "or remove [admin]");
  }

  readToken(reader, admin);
  if (admin.listen && admin.token.empty()) {
    reader.fail(*reader.find("listen"),
                fmt::format("listen is set without a token, and every TCP request must carry "
                            "one; {}",
                            kTokenHow));
  }

  admin.max_body = reader.integer("max_body", 1, kMaxAdminBody, admin.max_body, "(bytes)");
  admin.max_connections =
      reader.integer("max_connections", 1, kMaxAdminConnections, admin.max_connections);
  admin.request_timeout =
      reader.duration("request_timeout", admin.request_timeout, /*positive=*/true);
  return admin;
}

}  // namespace fulcrum::config_detail
