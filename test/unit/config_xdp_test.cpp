#include <catch2/catch.hpp>

#include <string>

#include "config_test_util.hpp"
#include "fulcrum/config.hpp"

using namespace fulcrum;
using fulcrum::config_testing::errorOf;

namespace {

// An XDP listener on lines 1..; the pool follows. Line numbers in the expected messages
// count from here.
std::string xdpConfig(std::string_view listener_keys, std::string_view algorithm = "maglev",
                      std::string_view pool_keys = "", std::string_view backend = "198.18.0.11:80",
                      std::string_view bind = "198.18.100.10:80") {
  return "[[listener]]\nname = \"vip\"\nbind = \"" + std::string(bind) +
         "\"\npool = \"web\"\n" + std::string(listener_keys) +
         "\n\n[pool.web]\nalgorithm = \"" + std::string(algorithm) + "\"\n" +
         std::string(pool_keys) + "\nbackends = [{ address = \"" + std::string(backend) +
         "\" }]\n";
}

constexpr std::string_view kXdp = "mode = \"xdp\"\ninterface = \"eth0\"";

}  // namespace

TEST_CASE("config reads the XDP listener keys", "[config][xdp]") {
  const Config config = parseConfig(
      xdpConfig("mode = \"xdp\"\ninterface = \"eth0\"\nxdp_attach = \"generic\"\n"
                "xdp_fallback = \"splicer\""),
      "x.toml");
  const ListenerConfig& l = config.listeners[0];
  CHECK(l.mode == ListenerMode::Xdp);
  CHECK(l.interface == "eth0");
  CHECK(l.xdp_attach == XdpAttach::Generic);
  CHECK(l.xdp_fallback == XdpFallback::Splicer);

  const Config plain = parseConfig(xdpConfig(""), "x.toml");
  CHECK(plain.listeners[0].mode == ListenerMode::Splicer);
  CHECK(plain.listeners[0].xdp_fallback == XdpFallback::None);
}

TEST_CASE("config refuses bad XDP listener settings with their place", "[config][xdp]") {
  CHECK(errorOf(xdpConfig("mode = \"xdp\"")) ==
        "x.toml:1:1: listener \"vip\": missing required key \"interface\"; add it, such as "
        "interface = \"eth0\"");
  CHECK(errorOf(xdpConfig("interface = \"eth0\"")) ==
        "x.toml:5:13: listener \"vip\": interface applies only to XDP listeners; remove it or "
        "set mode = \"xdp\"");
  CHECK(errorOf(xdpConfig("mode = \"xdp\"\ninterface = \"eth0\"\nxdp_attach = \"fast\""))
            .rfind("x.toml:7:14:", 0) == 0);
  CHECK(errorOf(xdpConfig("mode = \"xdp\"\ninterface = \"a/b\"")) ==
        "x.toml:6:13: listener \"vip\": interface \"a/b\" is not a valid interface name; use "
        "the name `ip link` shows, such as \"eth0\"");
  CHECK(errorOf(xdpConfig(kXdp, "maglev", "", "198.18.0.11:80", "0.0.0.0:80")) ==
        "x.toml:3:8: listener \"vip\": bind \"0.0.0.0:80\": an XDP listener needs one VIP "
        "address and port, not a wildcard or port 0");
}

TEST_CASE("config refuses XDP listeners whose pool the kernel cannot serve", "[config][xdp]") {
  CHECK(errorOf(xdpConfig(kXdp, "ring_hash")) ==
        "x.toml:5:8: listener \"vip\" has mode = \"xdp\" but pool \"web\" uses algorithm "
        "\"ring_hash\"; XDP steers by Maglev only, set algorithm = \"maglev\"");
  CHECK(errorOf(xdpConfig(kXdp, "maglev", "maglev_table_size = 131071")) ==
        "x.toml:5:8: listener \"vip\" has mode = \"xdp\" but pool \"web\" has "
        "maglev_table_size = 131071; XDP tables hold at most 65537");
  CHECK(errorOf(xdpConfig(kXdp, "maglev", "proxy_protocol = \"v2\"")) ==
        "x.toml:5:8: listener \"vip\" has mode = \"xdp\" but pool \"web\" sends PROXY "
        "headers, which packets steered in the kernel cannot carry; set proxy_protocol = "
        "\"off\"");
  CHECK(errorOf(xdpConfig(kXdp, "maglev", "", "[2001:db8::1]:80")) ==
        "x.toml:5:8: listener \"vip\" has mode = \"xdp\" on 198.18.100.10:80 but pool \"web\" "
        "has backend [2001:db8::1]:80 of the other family; XDP encapsulates in the VIP's "
        "family, so use backends of the same family");
}
