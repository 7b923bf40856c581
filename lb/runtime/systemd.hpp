#pragma once

// systemd service notifications (sd_notify) for a Type=notify unit. Outside systemd
// (NOTIFY_SOCKET unset) every call does nothing, so Fulcrum runs the same by hand.

#include <cstdint>
#include <string_view>

namespace fulcrum::runtime::systemd {

// READY=1 with a status line: every listener accepts.
void ready(std::string_view status);
// RELOADING=1 with a status line, before a reload; ready() after it.
void reloading(std::string_view status);
// STOPPING=1 with a status line: the drain has begun.
void stopping(std::string_view status);
// STATUS= only.
void status(std::string_view status);

// The watchdog period the unit asks for (WatchdogSec=), in milliseconds; 0 when off.
uint64_t watchdogIntervalMs();
// WATCHDOG=1.
void watchdogPing();

}  // namespace fulcrum::runtime::systemd
