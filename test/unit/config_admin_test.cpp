// The [admin] table: what it resolves to, and how each bad value is refused with its
// position and a fix.

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "fulcrum/config.hpp"

using namespace fulcrum;

namespace {

constexpr std::string_view kTail = R"(
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "web"

[pool.web]
backends = [{ address = "127.0.0.1:7001" }]
)";

constexpr std::string_view kToken = "0123456789abcdef0123";

Config parse(std::string_view admin_text) {
  return parseConfig(std::string(admin_text) + std::string(kTail), "a.toml");
}

std::string errorOf(std::string_view admin_text) {
  try {
    parse(admin_text);
    return "(accepted)";
  } catch (const ConfigError& e) {
    return e.what();
  }
}

// A file in the temp dir removed when the test ends.
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    char name[] = "/tmp/fulcrum-token-XXXXXX";
    const int fd = ::mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    path_ = name;
    std::ofstream(path_) << contents;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

// Without [admin] the endpoint is off.
TEST_CASE("admin: absent table leaves the endpoint off", "[config][admin]") {
  const Config config = parse("");
  CHECK_FALSE(config.admin.enabled());
  CHECK_FALSE(config.admin.listen.has_value());
  CHECK(config.admin.socket.empty());
}

// Every key resolves; defaults apply to the rest.
TEST_CASE("admin: listen, socket, token and limits resolve", "[config][admin]") {
  const Config config = parse(R"([admin]
listen = "127.0.0.1:0"
socket = "/run/fulcrum/admin.sock"
token = "0123456789abcdef0123"
max_body = 1024
max_connections = 8
request_timeout = "3s"
)");
  const AdminConfig& admin = config.admin;
  CHECK(admin.enabled());
  REQUIRE(admin.listen.has_value());
  CHECK(admin.listen->toString() == "127.0.0.1:0");
  CHECK(admin.socket == "/run/fulcrum/admin.sock");
  CHECK(admin.token == kToken);
  CHECK(admin.max_body == 1024);
  CHECK(admin.max_connections == 8);
  CHECK(admin.request_timeout == Millis{3000});

  const Config only_socket = parse("[admin]\nsocket = \"/tmp/a.sock\"\n");
  CHECK(only_socket.admin.enabled());
  CHECK(only_socket.admin.token.empty());  // The unix socket needs no token.
  CHECK(only_socket.admin.max_body == 65536);
  CHECK(only_socket.admin.request_timeout == Millis{10000});
}

// token_file is read at load time, surrounding whitespace trimmed.
TEST_CASE("admin: token_file is read and trimmed", "[config][admin]") {
  const TempFile file("  \n" + std::string(kToken) + "\r\n\n");
  const Config config =
      parse("[admin]\nlisten = \"[::1]:9901\"\ntoken_file = \"" + file.path() + "\"\n");
  CHECK(config.admin.token == kToken);
  CHECK(config.admin.listen->toString() == "[::1]:9901");
}

// A TCP listen address without a token is refused at the listen value, saying how to fix it.
TEST_CASE("admin: listen without a token is refused", "[config][admin]") {
  const std::string error = errorOf("[admin]\nlisten = \"127.0.0.1:9901\"\n");
  CHECK(error.rfind("a.toml:2:10: [admin]: listen is set without a token", 0) == 0);
  CHECK(error.find("token_file") != std::string::npos);
}

// Each bad value: position, context and the fix.
TEST_CASE("admin: bad values are refused with position and fix", "[config][admin]") {
  CHECK(errorOf("[admin]\n") ==
        "a.toml:1:1: [admin]: neither listen nor socket is set, so the admin endpoint would "
        "stay off; add listen = \"127.0.0.1:9901\" or socket = \"/run/fulcrum/admin.sock\", or "
        "remove [admin]");
  CHECK(errorOf("[admin]\nlisten = \"localhost:9901\"\ntoken = \"0123456789abcdef0123\"\n")
            .rfind("a.toml:2:10: [admin]: listen \"localhost:9901\": ", 0) == 0);
  CHECK(errorOf("[admin]\nsocket = \"admin.sock\"\n") ==
        "a.toml:2:10: [admin]: socket \"admin.sock\" is not an absolute path; write one such as "
        "\"/run/fulcrum/admin.sock\"");
  CHECK(errorOf("[admin]\nsocket = \"/" + std::string(120, 'x') + "\"\n")
            .find("unix socket paths must be shorter than 108 bytes") != std::string::npos);
  CHECK(errorOf("[admin]\nsocket = \"/a.sock\"\ntoken = \"short\"\n") ==
        "a.toml:3:9: [admin]: token is 5 characters long; use at least 16");
  CHECK(errorOf("[admin]\nsocket = \"/a.sock\"\ntoken = \"0123456789 abcdef0123\"\n")
            .find("token contains a space") != std::string::npos);
  CHECK(errorOf("[admin]\nsocket = \"/a.sock\"\ntoken = \"0123456789abcdef0123\"\n"
                "token_file = \"/x\"\n") ==
        "a.toml:4:14: [admin]: token and token_file are both set; keep one of them");
  CHECK(errorOf("[admin]\nsocket = \"/a.sock\"\nmax_body = 0\n") ==
        "a.toml:3:12: [admin]: max_body = 0 is out of range; expected an integer from 1 to "
        "16777216 (bytes)");
  CHECK(errorOf("[admin]\nsocket = \"/a.sock\"\nrequest_timeout = \"0s\"\n")
            .find("request_timeout \"0s\" is zero") != std::string::npos);
  CHECK(errorOf("[admin]\nsocket = \"/a.sock\"\nlisten_addr = \"x\"\n")
            .rfind("a.toml:3:15: unknown key \"listen_addr\" in [admin]; did you mean \"listen\"?",
                   0) == 0);
  CHECK(errorOf("admin = 5\n").find("admin is an integer; expected a table") !=
        std::string::npos);
}

// A token file that is missing, empty or holds a short token is refused at token_file.
TEST_CASE("admin: unusable token files are refused", "[config][admin]") {
  CHECK(errorOf("[admin]\nlisten = \"127.0.0.1:1\"\ntoken_file = \"/nonexistent/token\"\n") ==
        "a.toml:3:14: [admin]: token_file \"/nonexistent/token\": cannot read: No such file or "
        "directory; give the path of a file holding the token");

  const TempFile empty(" \n");
  CHECK(errorOf("[admin]\nlisten = \"127.0.0.1:1\"\ntoken_file = \"" + empty.path() + "\"\n") ==
        "a.toml:3:14: [admin]: token_file \"" + empty.path() +
            "\" is empty; write the token into it");

  const TempFile short_token("abc\n");
  CHECK(errorOf("[admin]\nlisten = \"127.0.0.1:1\"\ntoken_file = \"" + short_token.path() +
                "\"\n")
            .find("is 3 characters long; use at least 16") != std::string::npos);

  CHECK(errorOf("[admin]\nlisten = \"127.0.0.1:1\"\ntoken_file = \"/tmp\"\n")
            .find("is not a regular file") != std::string::npos);
}
