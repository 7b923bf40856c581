#include "runtime/systemd.hpp"

#include <systemd/sd-daemon.h>

#include <string>

namespace fulcrum::runtime::systemd {

namespace {

void send(std::string_view state, std::string_view status) {
  std::string message(state);
  if (!status.empty()) {
    message += message.empty() ? "STATUS=" : "\nSTATUS=";
    message += status;
  }
  // unset_environment = 0: a reload later in the process's life notifies again.
  sd_notify(0, message.c_str());
}

}  // namespace

void ready(std::string_view status) {
  send("READY=1", status);
}

void reloading(std::string_view status) {
  send("RELOADING=1", status);
}

void stopping(std::string_view status) {
  send("STOPPING=1", status);
}

void status(std::string_view status) {
  send("", status);
}

uint64_t watchdogIntervalMs() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0) {
    return 0;
  }
  return usec / 1000;
}

void watchdogPing() {
  sd_notify(0, "WATCHDOG=1");
}

}  // namespace fulcrum::runtime::systemd
